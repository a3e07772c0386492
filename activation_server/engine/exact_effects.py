"""Exact effects (issue 23): the real change of the loss when a node is ablated, for many nodes in
one batched forward pass — one batch row per (node, prompt), as the patching sweeps do — to show
beside the node table's estimated total effect.

The rows are laid out node-major: block ``j`` holds every prompt of the request with node ``j``
ablated, and one last block holds the prompts with nothing ablated (the clean loss, computed in the
same pass so that both sides of the difference round alike). The request's own interventions apply
to every block (each wrapped with :class:`OnRows` onto its block's rows), and so do the SAE splices
of its plan, so a latent or an SAE error is ablated exactly where the table measured it.

A node is ablated as :class:`~..schemas.NodeIntervention` would: zeroed (or set to its mean over
the reference corpus at its position) at its hook — a head's (query, key) pair in the attention
pattern without renormalising, a head's whole output at a query in ``attn.hook_z``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from mechscope.inference import MaskedPatch
from mechscope.inference.interventions import OnRows

from ..schemas import LossSpec
from .objective import logit_columns, loss_scalar
from .prompts import PreparedPrompts

if TYPE_CHECKING:
    from .engine import Engine


@dataclasses.dataclass(frozen=True)
class AblatedNode:
    """One node to ablate: its kind, layer, index and SAE as in a node row; per prompt its position
    (None where the node does not exist on that prompt) and, for a head's (query, key) pair, its key
    position (a head with no key positions is its whole output at the query)."""

    kind: str
    layer: int | None
    index: int
    sae: str | None
    positions: tuple[int | None, ...]
    key_positions: tuple[int | None, ...] | None = None

    @classmethod
    def from_row(cls, row: dict) -> "AblatedNode":
        keys = row.get("key_positions")
        return cls(row["kind"], row["layer"], row["index"], row.get("sae"), tuple(row["positions"]),
                   tuple(keys) if keys is not None else None)

    @property
    def hook(self) -> str:
        if self.kind == "attn_head":
            return f"blocks.{self.layer}.attn.hook_{'z' if self.key_positions is None else 'pattern'}"
        if self.kind == "mlp_neuron":
            return f"blocks.{self.layer}.mlp.hook_post"
        if self.kind in ("sae_latent", "sae_error"):
            return f"{self.sae}.hook_sae_{'acts_post' if self.kind == 'sae_latent' else 'error'}"
        return "hook_embed" if self.kind == "embedding" else "hook_pos_embed"

    def where(self, prompt: int) -> tuple | None:
        """The index of the node's value in its hook's activation of ``prompt`` (batch axis left
        out), or None where the node does not exist there."""
        q = self.positions[prompt]
        if q is None:
            return None
        if self.kind == "attn_head":
            if self.key_positions is None:
                return (q, self.index)                        # [pos, head, d_head]
            k = self.key_positions[prompt]
            return None if k is None else (self.index, q, k)  # [head, query, key]
        if self.kind in ("mlp_neuron", "sae_latent"):
            return (q, self.index)
        return (q,)                                           # a vector at the position


def _row_scalars(loss: LossSpec, final: torch.Tensor, model, batch: int) -> torch.Tensor:
    """The loss of every row from ``final`` (``[rows, 1, d_model]``, the final LayerNorm's output at
    each row's loss position; the last ``batch`` rows are the clean prompts)."""
    columns = logit_columns(loss)
    if columns is not None:      # a logit difference reads a few columns of the unembedding
        return loss_scalar(loss, torch.tensor(0), columns)[0](final @ model.W_U[:, list(columns)])
    logits = model.unembed(final)
    if loss.kind != "kl":
        return loss_scalar(loss, torch.tensor(0))[0](logits)
    # KL against the *clean* reference prompt (the table's gradient holds the reference constant)
    logp = logits[:, 0].log_softmax(-1)
    p_ref = logp[-batch + loss.reference_prompt]
    return (p_ref.exp() * (p_ref - logp)).sum(-1)


def _masked_patches(engine: Engine, nodes: list[AblatedNode], prepared: PreparedPrompts, mode: str,
                    activations: dict[str, tuple]) -> list[MaskedPatch]:
    """One :class:`MaskedPatch` per hook, setting each node's value in its own block's rows."""
    B, rows = prepared.batch, (len(nodes) + 1) * prepared.batch
    by_hook: dict[str, list[tuple[int, AblatedNode]]] = {}
    for j, node in enumerate(nodes):
        by_hook.setdefault(node.hook, []).append((j, node))
    out = []
    for hook, members in by_hook.items():
        shape = activations[hook]
        mask = torch.zeros((rows, *shape), dtype=torch.bool)
        source = torch.zeros(()) if mode == "zero" else torch.zeros((rows, *shape))
        mean = engine.reference_activations(hook).mean(0) if mode == "mean" else None   # [pos, ...]
        for j, node in members:
            for i in range(B):
                at = node.where(i)
                if at is None:
                    continue
                mask[(j * B + i, *at)] = True
                if mean is not None:
                    source[(j * B + i, *at)] = mean[at]
        out.append(MaskedPatch(hook, mask=mask, source=source))
    return out


@torch.no_grad()
def exact_effects(engine: Engine, prepared: PreparedPrompts, interventions: list, splice_points: list[str],
                  loss: LossSpec, loss_positions: list[int], nodes: list[AblatedNode], mode: str = "zero"
                  ) -> torch.Tensor:
    """``[len(nodes), batch]``: loss(clean) − loss(node ablated) on each prompt of ``prepared``
    (NaN where the node does not exist), for ``mode`` 'zero' or 'mean' ablation. One forward pass of
    ``(len(nodes) + 1) × batch`` rows; ``interventions`` are the request's own (rows counted from 0)."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"exact effects ablate with 'zero' or 'mean', not {mode!r}")
    if mode == "mean" and any(n.kind == "attn_head" and n.key_positions is not None for n in nodes):
        raise ValueError("a head's (query, key) pair can only be zero-ablated")
    model, B = engine.model, prepared.batch
    blocks = len(nodes) + 1
    shapes = _activation_shapes(engine, prepared, splice_points, {n.hook for n in nodes})
    patches = _masked_patches(engine, nodes, prepared, mode, shapes)
    own = [OnRows(iv, j * B, (j + 1) * B) for j in range(blocks) for iv in interventions]
    final = model(prepared.tokens.repeat(blocks, 1), prepared.mask.repeat(blocks, 1),
                  interventions=own + patches, splices=engine.splices(splice_points),
                  logit_positions=torch.tensor(loss_positions).repeat(blocks), return_final=True)
    scalars = _row_scalars(loss, final, model, B).view(blocks, B)
    effects = scalars[-1:] - scalars[:-1]
    exists = torch.tensor([[n.where(i) is not None for i in range(B)] for n in nodes], dtype=torch.bool)
    return torch.where(exists.reshape(effects.shape), effects, float("nan"))


def _activation_shapes(engine: Engine, prepared: PreparedPrompts, splice_points: list[str], hooks: set[str]
                       ) -> dict[str, tuple]:
    """The shape of each hook's activation without its batch axis, for these prompts."""
    cfg, n = engine.model.cfg, prepared.width
    out = {}
    for hook in hooks:
        if hook.endswith("hook_pattern"):
            out[hook] = (cfg.n_heads, n, n)
        elif hook.endswith("hook_z"):
            out[hook] = (n, cfg.n_heads, cfg.d_head)
        elif hook.endswith("mlp.hook_post"):
            out[hook] = (n, cfg.d_mlp)
        elif hook.endswith("hook_sae_acts_post"):
            out[hook] = (n, engine.saes[hook.rsplit(".hook_sae_", 1)[0]].n_latents)
        elif hook.endswith("hook_sae_error"):
            point = hook.rsplit(".hook_sae_", 1)[0]
            out[hook] = (n, cfg.d_mlp if point.endswith("mlp.hook_post") else cfg.d_model)
        else:
            out[hook] = (n, cfg.d_model)
    return out
