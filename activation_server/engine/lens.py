"""Logit lens (per layer, through the final LayerNorm) and the tokens a component's write promotes."""

from __future__ import annotations

import torch

from mechscope.inference import gpt2_tokenizer

from ..errors import RequestError
from .interventions import validate_node
from .predictions import predictions
from .prompts import prepare_prompts, single_token_ids
from ..schemas import (LensLayer, LogitLensRequest, LogitLensResult, NodeRef, PromptSpec, TokenEffect,
                      WriteTokensResult)


@torch.no_grad()
def logit_lens(model, request: LogitLensRequest) -> LogitLensResult:
    prepared = prepare_prompts([PromptSpec(text=request.prompt, prepend_bos=request.prepend_bos)], model.cfg.n_ctx)
    pos = prepared.resolve_position(0, request.position, "position")
    targets = single_token_ids(request.targets, "targets")
    n = model.cfg.n_layers
    points = [f"blocks.{i}.hook_resid_pre" for i in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]
    _, cache = model.run_with_cache(prepared.tokens, names=points)
    logits = model.unembed(model.final_norm(torch.stack([cache[point][0, pos] for point in points])))  # [points, vocab]
    probs = logits.softmax(-1)[:, targets].tolist()
    layers = [LensLayer(point=point, top_tokens=top, target_probs=p)
              for point, (top, _, _), p in zip(points, predictions(logits, k=request.top_k), probs)]
    return LogitLensResult(tokens=gpt2_tokenizer().token_strs(prepared.token_ids[0]), position=pos, layers=layers)


def _write_direction(model, saes: dict, node: NodeRef) -> torch.Tensor:
    """The residual-stream direction a unit activation of ``node``'s component writes."""
    validate_node(node, model, saes, "node")
    if node.kind == "mlp_neuron":
        return model.h[node.layer].mlp.c_proj.weight[node.index]
    if node.kind == "sae_latent":
        sae = saes[node.sae]
        row = sae.W_dec[node.index]
        return row @ model.h[node.layer].mlp.c_proj.weight if node.sae.endswith("mlp.hook_post") else row
    raise RequestError(f"{node.kind} nodes have no fixed write direction (a head's write depends on what it "
                       "attends to; neurons and latents have one)", field="node.kind")


@torch.no_grad()
def write_tokens(model, saes: dict, node: NodeRef, k: int = 10, shared: torch.Tensor | None = None
                 ) -> WriteTokensResult:
    """Tokens the node's write direction promotes and suppresses. ``shared`` (see
    :func:`~mechscope.inference.vocabulary.shared_unembedding_mask`) marks tokens left out: they
    always tie, so listing some of them says nothing."""
    direction = _write_direction(model, saes, node)
    scores = (direction * model.ln_f.weight) @ model.W_U
    scores = scores - scores.mean()
    if shared is not None:
        k = min(k, int((~shared).sum()))
        top, bottom = scores.masked_fill(shared, float("-inf")).topk(k), (-scores).masked_fill(shared, float("-inf")).topk(k)
    else:
        top, bottom = scores.topk(k), (-scores).topk(k)

    def effects(values, indices, sign):
        ids = indices.tolist()
        return [TokenEffect(token=s, token_id=i, value=sign * v)
                for s, i, v in zip(gpt2_tokenizer().token_strs(ids), ids, values.tolist())]
    return WriteTokensResult(promoted=effects(top.values, top.indices, 1), suppressed=effects(bottom.values, bottom.indices, -1))
