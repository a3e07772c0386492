"""Write vectors of nodes and the tokens they promote / suppress (direct logit effect).

* MLP neuron n of layer L: row n of ``h[L].mlp.c_proj.weight`` (what the neuron adds per unit).
* SAE latent i: decoder row ``W_dec[i]``, mapped to the residual stream by the linear map that
  follows its hook point (``mlp.hook_post`` -> MLP ``c_proj``; ``attn.hook_z`` -> attention
  ``c_proj``; residual-width points as is). Latents of points with no linear path to the residual
  (``mlp.hook_pre``, LayerNorm outputs) get no token effects.
* Attention head: its OV output depends on what it attends to, so we use data: the mean, over the
  head's top examples, of its actual write vector at the strongest (query, key) pair of each
  example (``pattern[q,k] · v[k] @ W_O[h]``) — "what the head writes when it fires hardest".

Token effects: the write vector is centred over d_model and multiplied by the final LayerNorm's
gain (its scale is treated as constant, as in the debugger's direct effects), then by ``W_U``;
the largest entries are promoted tokens, the smallest suppressed ones. Tokens that share their
unembedding vector with others (the organism's never-seen tokens) always tie and are left out.
"""

from __future__ import annotations

import torch

from mechscope.inference.hooks import layer_of
from mechscope.inference.vocabulary import shared_unembedding_mask

_RESIDUAL_WIDTH_SUFFIXES = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")


def sae_write_vectors(model, hook_point: str, w_dec: torch.Tensor) -> torch.Tensor | None:  # type: ignore[no-untyped-def]
    """Residual-stream write vectors ``[n_latents, d_model]`` of an SAE's latents, or None."""
    layer = layer_of(hook_point)
    suffix = hook_point.split(".", 2)[2] if layer is not None else hook_point
    if suffix == "mlp.hook_post":
        return w_dec @ model.h[layer].mlp.c_proj.weight
    if suffix == "attn.hook_z":
        return w_dec @ model.h[layer].attn.c_proj.weight
    if suffix in _RESIDUAL_WIDTH_SUFFIXES or hook_point in ("hook_embed", "hook_pos_embed"):
        return w_dec
    return None


def token_effects(model, vectors: torch.Tensor, n_tokens: int, chunk: int = 256,  # type: ignore[no-untyped-def]
                  shared: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(promoted ids, promoted values, suppressed ids, suppressed values), each ``[nodes, n_tokens]``;
    suppressed values are the most negative logit contributions, most negative first. ``shared``:
    :func:`shared_unembedding_mask` of the model (computed here when not given; pass it when
    calling this for many node groups of one model)."""
    w_u = model.W_U.detach().float()
    gain = model.ln_f.weight.detach().float()
    if shared is None:
        shared = shared_unembedding_mask(model)  # tokens that always tie (the organism's unused tokens)
    n_tokens = min(n_tokens, int((~shared).sum()))
    outs: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for i in range(0, vectors.shape[0], chunk):
            v = vectors[i:i + chunk].detach().float()
            v = (v - v.mean(-1, keepdim=True)) * gain
            logits = v @ w_u
            top = logits.masked_fill(shared, float("-inf")).topk(n_tokens, dim=-1)
            bottom = logits.masked_fill(shared, float("inf")).topk(n_tokens, dim=-1, largest=False)
            outs.append((top.indices, top.values, bottom.indices, bottom.values))
    if not outs:
        empty_i, empty_v = torch.zeros(0, n_tokens, dtype=torch.long), torch.zeros(0, n_tokens)
        return empty_i, empty_v, empty_i, empty_v
    return tuple(torch.cat([o[j] for o in outs]) for j in range(4))  # type: ignore[return-value]
