"""The layer × head grid of a prompt (the view an IOI replication starts from): per head, its
direct effect on the objective (summed over its (query, key) pairs, from the node tensors of one
attribution pass) and the exact change of the objective when the head is zero-ablated at every
position (:func:`~.head_effects.ablation_head_effects`)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from .schemas import AttributionRequest, LossSpec, PromptSpec


class HeadGridRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1)
    loss: LossSpec
    prepend_bos: bool = Field(default=True, description="start with <|endoftext|>, as GPT-2 and the organism were trained")


class HeadGridResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: float = Field(description="the objective on the prompt")
    direct_effect: list[list[float]] = Field(description="[layer][head]: the head's direct effect, summed over its pairs")
    total_effect: list[list[float]] = Field(description="[layer][head]: the estimated total effect, summed over its pairs")
    ablation_effect: list[list[float]] = Field(
        description="[layer][head]: objective − objective with the head zero-ablated at every position")


def head_grid(engine, request: HeadGridRequest) -> HeadGridResult:
    from .attribution import compute_node_tensors          # the engine, imported when first used
    from .head_effects import ablation_head_effects
    attribution = AttributionRequest(prompts=[PromptSpec(text=request.prompt, prepend_bos=request.prepend_bos)],
                                     loss=request.loss, top_k=1)
    tensors = compute_node_tensors(engine, attribution)
    heads = [b for b in tensors.blocks if b.kind == "attn_head"]

    def per_head(column: str) -> list[list[float]]:
        return torch.stack([torch.nan_to_num(b.values[column][0]).sum((1, 2)) for b in heads]).tolist()

    return HeadGridResult(loss=float(tensors.scalars[0]), direct_effect=per_head("direct_effect"),
                          total_effect=per_head("total_effect"),
                          ablation_effect=ablation_head_effects(engine, attribution).tolist())
