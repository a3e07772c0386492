"""A component's activations on given prompts: per token for neurons and latents, the (query,
key) matrix for a head."""

from __future__ import annotations

import torch

from mechscope.inference import gpt2_tokenizer

from ..server_schemas import NodeActivationsRequest, NodeActivationsResult, PromptActivations
from .generation import check_component


@torch.no_grad()
def node_activations(engine, request: NodeActivationsRequest) -> NodeActivationsResult:
    """A component's activation on each token of each prompt (neurons: post-GELU value; latents:
    the SAE's latent value), or for a head the (query, key) matrix of its write norm
    ‖p_qk · v_k W_O‖ or of its attention probability."""
    c = request.component
    check_component(engine, c, "component")
    model, tok = engine.model, gpt2_tokenizer()
    results, best = [], 0.0
    for ids in tok.encode_prompts(request.prompts, prepend_bos=request.prepend_bos):
        tokens = torch.tensor([ids])
        values = matrix = None
        if c.kind == "mlp_neuron":
            point = f"blocks.{c.layer}.mlp.hook_post"
            _, cache = model.run_with_cache(tokens, names=[point])
            values = cache[point][0, :, c.index].tolist()
        elif c.kind == "sae_latent":
            point = f"{c.sae}.hook_sae_acts_post"
            _, cache = model.run_with_cache(tokens, names=[point], splices=engine.splices([c.sae]))
            values = cache[point][0, :, c.index].tolist()
        else:
            pattern, v = f"blocks.{c.layer}.attn.hook_pattern", f"blocks.{c.layer}.attn.hook_v"
            _, cache = model.run_with_cache(tokens, names=[pattern, v])
            probs = cache[pattern][0, c.index]                                   # [query, key]
            if request.head_value == "write_norm":
                w_o = model.h[c.layer].attn.W_O[c.index]                         # [d_head, d_model]
                probs = probs * (cache[v][0, :, c.index] @ w_o).norm(dim=-1)[None, :]
            matrix = [row[:q + 1] for q, row in enumerate(probs.tolist())]
        flat = values if values is not None else [x for row in matrix for x in row]
        best = max(best, max(flat))
        results.append(PromptActivations(tokens=tok.token_strs(ids), token_ids=ids, values=values, matrix=matrix))
    return NodeActivationsResult(component=c, prompts=results, max_value=best)
