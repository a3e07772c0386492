"""GradDrop (AtP*, Kramár et al. 2024), for cancellation false negatives (issue 23).

A node whose effect runs along several paths that cancel gets a small estimated total effect while
ablating it may still matter (the paths do not cancel as exactly under a real ablation). GradDrop
breaks the cancellation: for each layer ``l`` the estimate is recomputed with the gradient through
layer ``l``'s residual contributions (its attention and MLP outputs) dropped — every path through
that layer removed — and the node's GradDrop score is the mean over the layers other than its own
of the absolute values:

    graddrop(n) = 1/(L − 1) Σ_{l ≠ layer(n)} |estimate with layer l's gradient dropped (n)|

(embeddings: the mean over all L). A node with a small estimate and a large score is a candidate
false negative. All L variants run as rows of one batched forward/backward pass (block ``l`` of the
batch drops layer ``l``), with the request's interventions on every block.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from .node_table import NodeGroup
from .node_values import total_effects_over_copies

if TYPE_CHECKING:
    from .engine import Engine
    from .shared_passes import _Planned


def _dropper(layer_rows: torch.Tensor):
    """A forward hook keeping the value but cutting the gradient on the rows ``layer_rows`` (bool)."""
    def drop(x: torch.Tensor, ctx) -> torch.Tensor:
        keep = layer_rows.view(-1, *([1] * (x.dim() - 1))).to(x.device)
        return torch.where(keep, x.detach(), x)
    return drop


def graddrop_scores(engine: Engine, planned: _Planned) -> list[NodeGroup]:
    """The node groups of ``planned`` (a loss explanation) with one column, ``graddrop``
    ``[batch, *shape]``: each node's GradDrop score (see the module docstring)."""
    return [NodeGroup(g.kind, g.layer, g.sae, {"graddrop": graddrop_score(g.values["dropped"], g.layer)})
            for g in dropped_estimates(engine, planned)]


def graddrop_score(dropped: torch.Tensor, layer: int | None) -> torch.Tensor:
    """``dropped`` ``[L, ...]`` (the estimate with each layer's gradient dropped) -> the score."""
    others = [l for l in range(dropped.shape[0]) if l != layer]
    return dropped[others].abs().mean(0)


def dropped_estimates(engine: Engine, planned: _Planned) -> list[NodeGroup]:
    """The node groups of ``planned`` with one column, ``dropped`` ``[L, batch, *shape]``: the
    estimated total effect with layer ``l``'s gradient dropped, for each ``l``."""
    model, prepared = engine.model, planned.prepared
    L, B = model.cfg.n_layers, prepared.batch
    hooks = list(planned.loss_objective.hooks)
    for layer in range(L):
        rows = torch.zeros(L * B, dtype=torch.bool)
        rows[layer * B:(layer + 1) * B] = True
        hooks += [(f"blocks.{layer}.hook_attn_out", _dropper(rows)), (f"blocks.{layer}.hook_mlp_out", _dropper(rows))]
    objective = dataclasses.replace(planned.loss_objective, hooks=hooks,
                                    positions=planned.loss_objective.positions * L)
    return total_effects_over_copies(engine, prepared, planned.interventions, objective, planned.mlp_plan,
                                     planned.attn_plan, planned.splice_points, L, "dropped")
