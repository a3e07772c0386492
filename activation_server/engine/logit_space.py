"""Estimates linear in the logits, exact in the output softmax (issue 23).

A log-probability loss on a prompt the model gets right sits where the softmax is saturated
(p ≈ 1): its gradient is ≈ 1 − p, so activation × gradient says almost nothing while ablating a
node the prediction rests on drops the log-probability by several nats. Here each node's removal is
linearised up to the logits instead — the first-order change of each of ``K`` logits (the targets
and the clean run's top predictions) from one batched backward pass, one row per logit — and the
loss is recomputed exactly from the changed logits (the other logits held at their clean values).
For a logit difference this is the live estimate itself (the loss is linear in the logits).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch


from ..schemas import LossSpec
from .node_table import NodeGroup
from .node_values import total_effects_over_copies
from .objective import loss_token_ids

if TYPE_CHECKING:
    from .engine import Engine
    from .shared_passes import _Planned


def logit_changes(engine: Engine, planned: _Planned, tokens: list[list[int]]) -> list[NodeGroup]:
    """Node groups of ``planned`` with one column, ``logits`` ``[K, batch, *shape]``: each node's
    first-order contribution to each logit of ``tokens[i]`` (``K`` per prompt ``i``) at prompt
    ``i``'s loss position (live final LayerNorm; what removing the node would take away from that
    logit). One forward/backward pass of ``K × batch`` rows."""
    prepared = planned.prepared
    B, K = prepared.batch, len(tokens[0])
    if len(tokens) != B or any(len(t) != K for t in tokens):
        raise ValueError("logit_changes needs K tokens for every prompt")
    union = tuple(sorted({t for ts in tokens for t in ts}))
    column = torch.tensor([union.index(tokens[i][j]) for j in range(K) for i in range(B)])
    pick = torch.arange(K * B)

    def scalar(captured, logits):                 # logits [K·B, 1, U]: row j·B + i reads tokens[i][j]
        return logits[pick, 0, column]
    objective = dataclasses.replace(planned.loss_objective, scalar=scalar, logit_columns=union,
                                    positions=planned.loss_objective.positions * K)
    return total_effects_over_copies(engine, prepared, planned.interventions, objective, planned.mlp_plan,
                                     planned.attn_plan, planned.splice_points, K, "logits")


def softmax_total_effects(engine: Engine, planned: _Planned, clean_logits: torch.Tensor, k: int = 32
                          ) -> list[torch.Tensor]:
    """Per node group of ``planned`` (a log_prob loss), ``[batch, *shape]``: the softmax estimate
    of every node (NaN where the node does not exist). ``clean_logits`` ``[batch, vocab]``."""
    loss = planned.request.loss
    tokens = [softmax_tokens(row, loss, k) for row in clean_logits]
    width = min(len(t) for t in tokens)
    tokens = [t[:width] for t in tokens]     # the targets first, then as many top predictions as all have
    out = []
    for g in logit_changes(engine, planned, tokens):
        v = g.values["logits"]                                            # [K, B, *shape]
        per_prompt = [softmax_estimate(v[:, i].reshape(width, -1), clean_logits[i], tokens[i], loss).view(v.shape[2:])
                      for i in range(v.shape[1])]
        out.append(torch.stack(per_prompt))
    return out


def softmax_tokens(clean_logits: torch.Tensor, loss: LossSpec, k: int = 32) -> list[int]:
    """The loss's targets and the clean run's top ``k`` predictions, distinct."""
    top = clean_logits.topk(k).indices.tolist()
    return list(dict.fromkeys([*loss_token_ids(loss), *top]))


def softmax_estimate(contributions: torch.Tensor, clean_logits: torch.Tensor, tokens: list[int], loss: LossSpec
                     ) -> torch.Tensor:
    """loss(clean) − loss(logits with each node's contribution removed), per node.
    ``contributions`` ``[K, nodes]`` (rows in ``tokens``' order); ``clean_logits`` ``[vocab]``.
    Log-probability losses only."""
    if loss.kind != "log_prob":
        raise ValueError("the softmax estimate is for log_prob losses")
    index = torch.tensor(tokens)
    rest = torch.ones_like(clean_logits, dtype=torch.bool)
    rest[index] = False
    rest_lse = clean_logits[rest].logsumexp(0)
    targets = torch.tensor([tokens.index(t) for t in loss_token_ids(loss)])

    def log_prob(z: torch.Tensor) -> torch.Tensor:           # z [K, nodes]
        lse = torch.logaddexp(z.logsumexp(0), rest_lse)
        return z[targets].logsumexp(0) - lse
    z = clean_logits[index][:, None]
    return log_prob(z) - log_prob(z - contributions)
