"""Node values: activation, write magnitude, direct effect and estimated total effect of every
node of the model, for several prompts at once, from one batched forward and one backward.

Definitions (per prompt; ``g_read`` = gradient of the objective scalar at its read point, the
final residual stream for the loss with the final LayerNorm scale held constant):

- token / position embedding at p: activation 1, write = the embedding vector
- head h, pair (q, k): activation = attention probability p; write = p · v_k W_O[h]
- MLP neuron n at p: activation = post-GELU value a; write = a · W_out[n]
- SAE latent i at p: activation = latent value a; write = a · (decoder row i, mapped to the residual)
- SAE error at p: activation = ‖error‖; write = the error vector (mapped to the residual)

write magnitude = ‖write‖; direct effect = write · g_read (only for nodes writing straight into the
read space); estimated total effect = activation × ∂scalar/∂activation for neurons and latents,
write · ∂scalar/∂(output of the component) for heads, embeddings and errors — the first-order
change of the scalar if the node were removed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from mechscope.inference.hooks import HookContext
from mechscope.inference.interventions import OnRows

from ..schemas import AttributionRequest
from .node_table import NodeGroup
from .objective import Objective, frozen_read_gradient
from .prompts import PreparedPrompts
from .sae_errors import live_error_hooks

if TYPE_CHECKING:
    from .engine import Engine

Values = dict[str, torch.Tensor]     # column (activation, write_magnitude, ...) -> [batch, *group shape]


class Capture:
    """Forward hooks that keep activations (with their graph) for the backward pass."""

    def __init__(self, leaves: set[str]):
        self.store: dict[str, torch.Tensor] = {}
        self.leaves = leaves

    def __call__(self, x: torch.Tensor, ctx: HookContext):
        if ctx.name in self.leaves or not x.requires_grad:
            x = x.detach().requires_grad_(True)
            self.store[ctx.name] = x
            return x
        self.store[ctx.name] = x
        return None


def layer_plan(engine: Engine, request: AttributionRequest, objective: Objective) -> tuple[dict, dict, list[str]]:
    """Per layer, whether the MLP / attention side is shown as neurons/heads or as SAE latents."""
    n = engine.model.cfg.n_layers
    mlp, attn, splice = {}, {}, set(objective.splice_points)
    for layer in range(n):
        m = engine.sae_for(layer, "mlp") if request.mlp == "latents" else None
        a = engine.sae_for(layer, "attn") if request.attention == "latents" else None
        if m in objective.splice_points and layer == objective.max_layer:
            m = None  # the traced SAE itself: show its inputs (the layer's neurons) instead
        if a in objective.splice_points and layer == objective.max_layer:
            a = None
        mlp[layer], attn[layer] = m, a
        splice |= {p for p in (m, a) if p}
    for i, p in enumerate(request.prompts):
        for j, iv in enumerate(p.interventions):
            if iv.node.kind in ("sae_latent", "sae_error"):
                splice.add(iv.node.sae)
    return mlp, attn, sorted(splice)


def forward_backward(engine: Engine, prepared: PreparedPrompts, interventions: list, objective: Objective,
                     mlp_plan: dict, attn_plan: dict, splice_points: list[str], logit_positions: list[int]):
    """(logits ``[batch, vocab]``, objective scalars ``[batch]``, activations, gradients) of one
    pass. Only ``logit_positions`` (one per row: the loss positions) are unembedded."""
    model = engine.model
    n = model.cfg.n_layers
    names = {"hook_embed", "hook_pos_embed", objective.read_hook, *objective.capture}
    for layer in range(n):
        if attn_plan[layer]:
            p = attn_plan[layer]
            names |= {f"{p}.hook_sae_acts_post", f"{p}.hook_sae_error", f"{p}.hook_sae_input"}
        else:
            names |= {f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.hook_attn_out"}
        if mlp_plan[layer]:
            p = mlp_plan[layer]
            names |= {f"{p}.hook_sae_acts_post", f"{p}.hook_sae_error", f"{p}.hook_sae_input"}
        else:
            names.add(f"blocks.{layer}.mlp.hook_post")
    errors_fixed = set() if objective.live else {x for x in names if x.endswith("hook_sae_error")}
    capture = Capture(leaves={"hook_embed", "hook_pos_embed"} | errors_fixed)
    hooks = list(objective.hooks) + (live_error_hooks(engine.saes, splice_points) if objective.live else []) \
        + [(name, capture) for name in sorted(names)]
    with torch.enable_grad():
        final = model(prepared.tokens, prepared.mask, fwd_hooks=hooks, interventions=interventions,
                      splices=engine.splices(splice_points), logit_positions=torch.tensor(logit_positions),
                      return_final=True)                                    # [batch, 1, d_model]
        logits, read = _unembed(model, final, objective)
        scalars = objective.scalar(capture.store, read)
        tensors = list(capture.store.values())
        grads = torch.autograd.grad(scalars.sum(), tensors, allow_unused=True)
    grad = {name: (g if g is not None else torch.zeros_like(t))
            for name, t, g in zip(capture.store.keys(), tensors, grads)}
    acts = {name: t.detach() for name, t in capture.store.items()}
    return logits.detach()[:, 0], scalars.detach(), acts, grad


def _unembed(model, final: torch.Tensor, objective: Objective) -> tuple[torch.Tensor, torch.Tensor]:
    """(all logits of ``final``, the logits the objective scalar reads — alone differentiable)."""
    read = objective.read_logits(model, final)
    if objective.logit_columns is None:
        return read, read
    with torch.no_grad():
        logits = model.unembed(final)
    logits[..., list(objective.logit_columns)] = read.detach()   # reported = read, bit for bit
    return logits, read


def _masked(values: Values, mask: torch.Tensor) -> Values:
    """``values`` with NaN (no such node) where ``mask`` (broadcast from the left) is False."""
    return {k: torch.where(mask, v, float("nan")) for k, v in values.items()}


def _at_positions(values: Values, valid: torch.Tensor) -> Values:
    """``values`` (``[batch, pos, ...]``) with NaN at the padding positions of ``valid``
    (``[batch, pos]``); the tensors themselves when there is no padding (nothing to mark or copy)."""
    if bool(valid.all()):
        return values
    extra_dims = next(iter(values.values())).dim() - valid.dim()
    return _masked(values, valid[(...,) + (None,) * extra_dims])


def _columns(activation, write_magnitude, direct_effect, total_effect) -> Values:
    return {"activation": activation, "write_magnitude": write_magnitude, "direct_effect": direct_effect,
            "total_effect": total_effect}


@dataclasses.dataclass
class PassValues:
    """What one forward/backward pass captured: activations and their gradients, for the prompts
    of ``prepared`` (``valid``: their real positions), explaining ``objective``."""

    engine: Engine
    prepared: PreparedPrompts
    objective: Objective
    acts: dict[str, torch.Tensor]
    grad: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        self.valid = self.prepared.mask.bool()                          # [B, N]
        self.g_read = self.grad[self.objective.read_hook]              # [B, N, d_read]
        if self.objective.live:   # direct effects read the frozen-scale gradient
            self.g_read = frozen_read_gradient(self.acts, self.grad)


def node_groups(pv: PassValues, mlp_plan: dict, attn_plan: dict) -> tuple[list[NodeGroup], torch.Tensor]:
    """Every node group of the pass, and the direct effect of all biases per prompt (in forward
    order: each layer's attention, then its MLP)."""
    groups = _embedding_groups(pv)
    bias_direct = torch.zeros(pv.prepared.batch)
    for layer in range(pv.engine.model.cfg.n_layers):
        sides = (("attn_head", attn_plan[layer], _head_group, "attn"), ("mlp_neuron", mlp_plan[layer], _neuron_group, "mlp"))
        for kind, sae_point, component_group, side in sides:
            if not pv.objective.is_upstream(kind, layer):
                continue
            found, bias = (component_group(pv, layer) if sae_point is None
                           else _sae_groups(pv, sae_point, layer, side))
            groups += found
            if bias is not None:
                bias_direct += bias
    return groups, bias_direct


def _embedding_groups(pv: PassValues) -> list[NodeGroup]:
    groups = []
    for kind, hook in (("embedding", "hook_embed"), ("pos_embedding", "hook_pos_embed")):
        if not pv.objective.is_upstream(kind, None):
            continue
        w = pv.acts[hook]
        direct = ((w * pv.g_read).sum(-1) if pv.objective.read_space == "resid" and pv.objective.writes_directly(kind, None)
                  else torch.zeros(w.shape[:2]))
        vals = _columns(torch.ones(w.shape[:2]), w.norm(dim=-1), direct, (w * pv.grad[hook]).sum(-1))
        groups.append(NodeGroup(kind, None, None, _at_positions(vals, pv.valid)))
    return groups


def _head_group(pv: PassValues, layer: int) -> tuple[list[NodeGroup], torch.Tensor | None]:
    """Every (query, key) pair of every head of ``layer``; the output bias's direct effect."""
    attn = pv.engine.model.h[layer].attn
    p = pv.acts[f"blocks.{layer}.attn.hook_pattern"]                 # [B, H, Q, K]
    v = pv.acts[f"blocks.{layer}.attn.hook_v"]                       # [B, K, H, dh]
    vo = torch.einsum("bkhe,hed->bkhd", v, attn.W_O)                  # [B, K, H, d]
    B, K, H, d = vo.shape
    Q = p.shape[2]
    direct_ok = pv.objective.writes_directly("attn_head", layer)
    # vo dotted with the output gradient (and the read gradient) in one matmul
    reads = pv.grad[f"blocks.{layer}.hook_attn_out"]                 # [B, Q, d]
    if direct_ok:
        reads = torch.cat([reads, pv.g_read], 1)                       # [B, 2Q, d]
    dots = torch.bmm(reads, vo.reshape(B, K * H, d).transpose(1, 2)).view(B, -1, K, H).permute(0, 3, 1, 2)
    total = p * dots[:, :, :Q]                                          # [B, H, Q, K]
    direct = p * dots[:, :, Q:] if direct_ok else torch.zeros_like(p)
    wm = p * vo.norm(dim=-1).permute(0, 2, 1)[:, :, None, :]
    valid = pv.valid
    pair_ok = (valid[:, None, :, None] & valid[:, None, None, :]
               & torch.ones(p.shape[-2:], dtype=torch.bool).tril()[None, None]).expand_as(p)
    group = NodeGroup("attn_head", layer, None, _masked(_columns(p, wm, direct, total), pair_ok), attention_prob=p)
    bias = (attn.c_proj.bias * pv.g_read).sum((-1, -2)) if direct_ok else None
    return [group], bias


def _neuron_group(pv: PassValues, layer: int) -> tuple[list[NodeGroup], torch.Tensor | None]:
    """Every neuron of ``layer``'s MLP at every position; the output bias's direct effect."""
    objective = pv.objective
    mlp = pv.engine.model.h[layer].mlp
    a = pv.acts[f"blocks.{layer}.mlp.hook_post"]                     # [B, N, M]
    W_out = mlp.c_proj.weight                                           # [M, d]
    total = a * pv.grad[f"blocks.{layer}.mlp.hook_post"]
    if objective.read_space == "mlp_post" and layer == objective.max_layer:
        direct = a * pv.g_read
    elif objective.writes_directly("mlp_neuron", layer):
        direct = a * (pv.g_read @ W_out.T)
    else:
        direct = torch.zeros_like(a)
    group = NodeGroup("mlp_neuron", layer, None, _at_positions(_columns(a, a.abs() * W_out.norm(dim=-1), direct, total),
                                                               pv.valid))
    bias = None
    if objective.writes_directly("mlp_neuron", layer) and objective.read_space != "mlp_post":
        bias = (mlp.c_proj.bias * pv.g_read).sum((-1, -2))
    return [group], bias


def _sae_groups(pv: PassValues, point: str, layer: int, side: str) -> tuple[list[NodeGroup], torch.Tensor]:
    """Latent and error groups of the SAE at ``point``, and its biases' direct effect."""
    model, acts, grad, g_read = pv.engine.model, pv.acts, pv.grad, pv.g_read
    sae = pv.engine.saes[point]
    a = acts[f"{point}.hook_sae_acts_post"]                                   # [B, N, n]
    err = acts[f"{point}.hook_sae_error"]                                    # [B, N, d_in]
    norm = sae.input_norm(acts[f"{point}.hook_sae_input"])
    scale = norm.scale if norm.scale is not None else 1.0
    to_resid = model.h[layer].mlp.c_proj.weight if point.endswith("mlp.hook_post") else None    # [M, d]
    W_dec_res = sae.W_dec @ to_resid if to_resid is not None else sae.W_dec
    writes_direct = pv.objective.writes_directly("mlp_neuron" if side == "mlp" else "attn_head", layer)
    scale_t = scale if isinstance(scale, torch.Tensor) else torch.tensor(scale)
    total = a * grad[f"{point}.hook_sae_acts_post"]
    direct = a * (g_read @ W_dec_res.T) * scale_t if writes_direct else torch.zeros_like(a)
    wm = a.abs() * W_dec_res.norm(dim=-1) * scale_t
    groups = [NodeGroup("sae_latent", layer, point, _at_positions(_columns(a, wm, direct, total), pv.valid))]
    err_res = err @ to_resid if to_resid is not None else err
    err_direct = (err_res * g_read).sum(-1) if writes_direct else torch.zeros(err.shape[:2])
    err_vals = _columns(err_res.norm(dim=-1), err_res.norm(dim=-1), err_direct,
                        (err * grad[f"{point}.hook_sae_error"]).sum(-1))
    groups.append(NodeGroup("sae_error", layer, point, _at_positions(err_vals, pv.valid)))
    bias = torch.zeros(a.shape[0])
    if writes_direct:
        b_dec = sae.b_dec.expand_as(err)
        b_res = norm.apply(b_dec) if norm.scale is not None or norm.shift is not None else b_dec
        if to_resid is not None:
            b_res = b_res @ to_resid + model.h[layer].mlp.c_proj.bias
        bias = (b_res * g_read).sum(-1).sum(-1)
    return groups, bias


def total_effects_over_copies(engine: Engine, prepared: PreparedPrompts, interventions: list, objective: Objective,
                              mlp_plan: dict, attn_plan: dict, splice_points: list[str], copies: int, column: str
                              ) -> list[NodeGroup]:
    """One forward/backward pass over ``copies`` stacked copies of ``prepared`` (each copy with the
    prompts' own interventions; ``objective`` covers all ``copies × batch`` rows), and each node
    group's estimated total effect as its only column, ``column`` ``[copies, batch, *shape]``.
    GradDrop (a layer's gradient dropped per copy) and the logit-space estimate (one logit per copy)
    are both such passes."""
    B = prepared.batch
    rows = PreparedPrompts.concatenated([prepared] * copies)
    interventions = [OnRows(iv, j * B, (j + 1) * B) for j in range(copies) for iv in interventions]
    _, _, acts, grad = forward_backward(engine, rows, interventions, objective, mlp_plan, attn_plan, splice_points,
                                        objective.positions)
    groups, _ = node_groups(PassValues(engine, rows, objective, acts, grad), mlp_plan, attn_plan)
    return [NodeGroup(g.kind, g.layer, g.sae, {column: g.values["total_effect"].view(copies, B, *g.shape)})
            for g in groups]
