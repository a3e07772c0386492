"""The layer × head grid of a prompt (the view an IOI replication starts from): per head, its
direct effect on the objective (summed over its (query, key) pairs, from the node tensors of one
attribution pass) and the exact change of the objective when the head is zero-ablated at every
position (:func:`~.head_effects.ablation_head_effects`)."""

from __future__ import annotations

import torch

from ..schemas import AttributionRequest, HeadGridRequest, HeadGridResult, PromptSpec
from .head_effects import ablation_head_effects
from .shared_passes import node_tensors


def head_grid(engine, request: HeadGridRequest) -> HeadGridResult:
    attribution = AttributionRequest(prompts=[PromptSpec(text=request.prompt, prepend_bos=request.prepend_bos)],
                                     loss=request.loss, top_k=1)
    tensors = node_tensors(engine, attribution)
    heads = [b for b in tensors.groups if b.kind == "attn_head"]

    def per_head(column: str) -> list[list[float]]:
        return torch.stack([torch.nan_to_num(b.values[column][0]).sum((1, 2)) for b in heads]).tolist()

    return HeadGridResult(loss=float(tensors.scalars[0]), direct_effect=per_head("direct_effect"),
                          total_effect=per_head("total_effect"),
                          ablation_effect=ablation_head_effects(engine, attribution).tolist())
