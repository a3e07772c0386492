"""AtP*'s attention-softmax correction (Kramár et al. 2024), adapted to the node table's nodes
(issue 23).

Attribution patching linearises everything downstream of a node, including the softmax of every
later head whose query or key the node writes to; where that attention is saturated (a name mover
at p ≈ 0.99, an induction head), removing the node moves the pattern far from linearly. AtP*
recomputes the pattern instead. Here the node table's nodes are not queries or keys themselves
but writes into the residual stream, so for each node ``n`` (write vector ``w`` at position ``p``)
and each later attention layer the correction replaces the first-order term of the direct path
``n → query/key of that layer's heads → pattern`` by the exact softmax:

    Δq_p, Δk_p = (LN1(x_p − w) − LN1(x_p)) W_Q, W_K           (LayerNorm recomputed exactly)
    scores' = scores with row p recomputed from q_p + Δq_p and column p from k_p + Δk_p
    correction = Σ_heads ⟨g_pattern, softmax(scores') − pattern⟩ − ⟨g_scores, Δscores (first order)⟩

where ``g_pattern``, ``g_scores`` are the (live) gradients of the loss at the pattern and the scores,
so the linear term removed is exactly the one the node's gradient contains for that path. Paths
through two or more heads' queries/keys stay first order, as in AtP*. The corrected estimate is the
live estimate plus the correction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from .exact_effects import AblatedNode
from .node_values import forward_backward

if TYPE_CHECKING:
    from .engine import Engine
    from .shared_passes import _Planned

CHUNK = 64


def _layer_hooks(layer: int) -> list[str]:
    p = f"blocks.{layer}"
    return [f"{p}.ln1.hook_normalized", f"{p}.ln1.hook_scale", f"{p}.attn.hook_q", f"{p}.attn.hook_k",
            f"{p}.attn.hook_attn_scores", f"{p}.attn.hook_pattern", f"{p}.attn.hook_z"]


def qk_corrections(engine: Engine, planned: _Planned, nodes: list[AblatedNode]) -> torch.Tensor:
    """``[len(nodes), batch]``: the softmax correction of each node's live estimated total effect on
    each prompt (NaN where the node does not exist). One extra forward/backward pass (live)."""
    model, prepared = engine.model, planned.prepared
    n_layers = model.cfg.n_layers
    objective = dataclasses.replace(planned.loss_objective, capture=[
        *planned.loss_objective.capture, *[h for layer in range(n_layers) for h in _layer_hooks(layer)]])
    _, _, acts, grad = forward_backward(engine, prepared, planned.interventions, objective, planned.mlp_plan,
                                        planned.attn_plan, planned.splice_points, planned.loss_objective.positions)
    out = torch.full((len(nodes), prepared.batch), float("nan"))
    for b in range(prepared.batch):
        present = [j for j, node in enumerate(nodes) if node.where(b) is not None]
        for start in range(0, len(present), CHUNK):
            chunk = present[start:start + CHUNK]
            writes = torch.stack([_write(engine, acts, nodes[j], b) for j in chunk])          # [n, d]
            pos = torch.tensor([nodes[j].positions[b] for j in chunk])
            first = torch.tensor([_first_reader(nodes[j]) for j in chunk])
            out[chunk, b] = sum(_layer_correction(model, acts, grad, layer, b, -writes, pos) * (first <= layer)
                                for layer in range(n_layers))
    return out


def _first_reader(node: AblatedNode) -> int:
    """The first attention layer that reads the node's write."""
    return 0 if node.layer is None else node.layer + 1


def _write(engine: Engine, acts: dict, node: AblatedNode, b: int) -> torch.Tensor:
    """What the node adds to the residual stream at its position on prompt ``b`` ``[d_model]``."""
    model, at = engine.model, node.where(b)
    q = at[0] if node.kind != "attn_head" or node.key_positions is None else at[1]
    if node.kind == "attn_head":
        attn = model.h[node.layer].attn
        if node.key_positions is None:
            return acts[f"blocks.{node.layer}.attn.hook_z"][b, q, node.index] @ attn.W_O[node.index]
        _, _, k = at
        p = acts[f"blocks.{node.layer}.attn.hook_pattern"][b, node.index, q, k]
        return p * (acts[f"blocks.{node.layer}.attn.hook_v"][b, k, node.index] @ attn.W_O[node.index])
    if node.kind == "mlp_neuron":
        mlp = model.h[node.layer].mlp
        return acts[f"blocks.{node.layer}.mlp.hook_post"][b, q, node.index] * mlp.c_proj.weight[node.index]
    if node.kind in ("sae_latent", "sae_error"):
        sae = engine.saes[node.sae]
        norm = sae.input_norm(acts[f"{node.sae}.hook_sae_input"])
        to_resid = model.h[node.layer].mlp.c_proj.weight if node.sae.endswith("mlp.hook_post") else None
        if node.kind == "sae_latent":
            vec = sae.W_dec[node.index] * acts[f"{node.sae}.hook_sae_acts_post"][b, q, node.index]
            if norm.scale is not None:
                vec = vec * (norm.scale[b, q] if isinstance(norm.scale, torch.Tensor) else norm.scale)
        else:
            vec = acts[f"{node.sae}.hook_sae_error"][b, q]
        return vec @ to_resid if to_resid is not None else vec
    return acts["hook_embed" if node.kind == "embedding" else "hook_pos_embed"][b, q]


def _layer_correction(model, acts: dict, grad: dict, layer: int, b: int, delta: torch.Tensor, pos: torch.Tensor
                      ) -> torch.Tensor:
    """``[n]``: exact-softmax minus first-order effect, through ``layer``'s queries and keys, of
    adding ``delta[j]`` ``[n, d]`` to the residual entering ``layer`` at position ``pos[j]``."""
    p = f"blocks.{layer}"
    pattern, g_pattern = acts[f"{p}.attn.hook_pattern"][b], grad[f"{p}.attn.hook_pattern"][b]    # [H, Q, K]
    g_scores = pattern * (g_pattern - (pattern * g_pattern).sum(-1, keepdim=True))   # softmax's backward
    d_linear, new_pattern = pattern_change(model, acts, layer, b, delta, pos)
    linear = (g_scores * d_linear).sum((1, 2, 3))
    exact = (g_pattern * (new_pattern - pattern)).sum((1, 2, 3))
    return exact - linear


def pattern_change(model, acts: dict, layer: int, b: int, delta: torch.Tensor, pos: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``delta[j]`` added to the residual entering ``layer`` at ``pos[j]`` (its queries' and keys'
    input only): the first-order change of the attention scores ``[n, H, Q, K]`` (through LayerNorm's
    Jacobian, as the gradient sees it) and the new pattern ``[n, H, Q, K]`` (LayerNorm, scores and
    softmax recomputed exactly)."""
    p, block = f"blocks.{layer}", model.h[layer]
    attn, ln = block.attn, block.ln_1
    x_hat = acts[f"{p}.ln1.hook_normalized"][b, pos]                       # [n, d]
    scale = acts[f"{p}.ln1.hook_scale"][b, pos]                           # [n, 1]
    centred = delta - delta.mean(-1, keepdim=True)
    lin_hat = (centred - x_hat * (x_hat * centred).mean(-1, keepdim=True)) / scale   # LayerNorm's Jacobian
    new_centred = x_hat * scale + centred
    new_hat = new_centred / (new_centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
    q, k = acts[f"{p}.attn.hook_q"][b], acts[f"{p}.attn.hook_k"][b]      # [N, H, dh]
    scores = acts[f"{p}.attn.hook_attn_scores"][b]                        # [H, Q, K], -inf where masked
    root, n = math.sqrt(q.shape[-1]), len(pos)
    rows = torch.arange(n)

    def score_change(d_hat: torch.Tensor, cross: bool) -> torch.Tensor:
        d_ln = d_hat * ln.weight
        dq, dk = torch.einsum("nd,hde->nhe", d_ln, attn.W_Q), torch.einsum("nd,hde->nhe", d_ln, attn.W_K)
        d = torch.zeros(n, *scores.shape)
        d[rows, :, pos, :] += torch.einsum("nhe,khe->nhk", dq, k) / root      # row p: Δq_p · k
        d[rows, :, :, pos] += torch.einsum("qhe,nhe->nhq", q, dk) / root      # column p: q · Δk_p
        if cross:
            d[rows, :, pos, pos] += (dq * dk).sum(-1) / root                 # Δq_p · Δk_p
        return d

    d_linear = score_change(lin_hat, cross=False)
    new_pattern = torch.softmax(scores + score_change(new_hat - x_hat, cross=True), dim=-1).nan_to_num()
    return torch.where(scores.isinf(), 0.0, d_linear), new_pattern
