"""The node table: activation, write magnitude, direct effect and estimated total effect of every
node of the model, for several prompts at once, from one batched forward and one backward.

Definitions (per prompt; ``g_read`` = gradient of the explained scalar at its read point, the
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
import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from mechscope.inference import gpt2_tokenizer
from mechscope.inference.errors import InvalidInputError
from mechscope.inference.hooks import HookContext
from mechscope.inference.interventions import OnRows

from ..errors import RequestError
from .objective import Explained, logit_diff_constant, loss_explained, loss_token_ids, trace_explained
from .json_floats import float32_list
from .interventions import compile_interventions, validate_node
from .node_table import Block, node_tables, predictions, token_summaries
from .prompts import PreparedPrompts, check_loss, prepare_prompts
from ..schemas import AttributionRequest, AttributionResult

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Capture:
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


def _layer_plan(engine, request: AttributionRequest, explained: Explained) -> tuple[dict, dict, list[str]]:
    """Per layer, whether the MLP / attention side is shown as neurons/heads or as SAE latents."""
    n = engine.model.cfg.n_layers
    mlp, attn, splice = {}, {}, set(explained.splice_points)
    for layer in range(n):
        m = engine.sae_for(layer, "mlp") if request.mlp == "latents" else None
        a = engine.sae_for(layer, "attn") if request.attention == "latents" else None
        if m in explained.splice_points and layer == explained.max_layer:
            m = None  # the traced SAE itself: show its inputs (the layer's neurons) instead
        if a in explained.splice_points and layer == explained.max_layer:
            a = None
        mlp[layer], attn[layer] = m, a
        splice |= {p for p in (m, a) if p}
    for i, p in enumerate(request.prompts):
        for j, iv in enumerate(p.interventions):
            if iv.node.kind in ("sae_latent", "sae_error"):
                splice.add(iv.node.sae)
    return mlp, attn, sorted(splice)


def _forward_backward(engine, prepared, interventions, explained, mlp_plan, attn_plan, splice_points,
                      logit_positions: list[int]):
    """Activations and their gradients for one pass. Only ``logit_positions`` (one per row: the loss
    positions) are unembedded; logits come back as ``[batch, vocab]``."""
    model = engine.model
    n = model.cfg.n_layers
    names = {"hook_embed", "hook_pos_embed", explained.read_hook, *explained.capture}
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
    capture = _Capture(leaves={"hook_embed", "hook_pos_embed"} | {x for x in names if x.endswith("hook_sae_error")})
    hooks = list(explained.hooks) + [(name, capture) for name in sorted(names)]
    with torch.enable_grad():
        final = model(prepared.tokens, prepared.mask, fwd_hooks=hooks, interventions=interventions,
                      splices=engine.splices(splice_points), logit_positions=torch.tensor(logit_positions),
                      return_final=True)                                    # [batch, 1, d_model]
        logits, read = _unembed(model, final, explained)
        scalars = explained.scalar(capture.store, read)
        tensors = list(capture.store.values())
        grads = torch.autograd.grad(scalars.sum(), tensors, allow_unused=True)
    grad = {name: (g if g is not None else torch.zeros_like(t))
            for name, t, g in zip(capture.store.keys(), tensors, grads)}
    acts = {name: t.detach() for name, t in capture.store.items()}
    return logits.detach()[:, 0], scalars.detach(), acts, grad


def _unembed(model, final: torch.Tensor, explained: Explained) -> tuple[torch.Tensor, torch.Tensor]:
    """(all logits of ``final``, the logits the explained scalar reads — alone differentiable)."""
    read = explained.read_logits(model, final)
    if explained.logit_columns is None:
        return read, read
    with torch.no_grad():
        logits = model.unembed(final)
    logits[..., list(explained.logit_columns)] = read.detach()   # reported = read, bit for bit
    return logits, read


def _valid_positions(prepared: PreparedPrompts) -> torch.Tensor:
    return prepared.mask.bool()  # [batch, width]


def _masked(values: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``values`` with NaN (no such node) where ``mask`` (broadcast from the left) is False."""
    return {k: torch.where(mask, v, float("nan")) for k, v in values.items()}


def _at_positions(values: dict[str, torch.Tensor], valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """``values`` (``[batch, pos, ...]``) with NaN at the padding positions of ``valid``
    (``[batch, pos]``); the tensors themselves when there is no padding (nothing to mark or copy)."""
    if bool(valid.all()):
        return values
    extra_dims = next(iter(values.values())).dim() - valid.dim()
    return _masked(values, valid[(...,) + (None,) * extra_dims])


def _blocks(engine, prepared, explained, acts, grad, mlp_plan, attn_plan) -> tuple[list[Block], torch.Tensor]:
    """Every node block plus the direct effect of all biases per prompt."""
    model = engine.model
    valid = _valid_positions(prepared)
    g_read = grad[explained.read_hook]                                  # [B, N, d_read]
    blocks: list[Block] = []
    bias_direct = torch.zeros(prepared.batch)
    resid_read = explained.read_space == "resid"

    def dot_read(write: torch.Tensor, kind: str, layer) -> torch.Tensor:  # write [B, N, d] in read space
        if not explained.direct_writer(kind, layer):
            return torch.zeros(write.shape[:-1])
        return (write * g_read).sum(-1)

    for kind, hook in (("embedding", "hook_embed"), ("pos_embedding", "hook_pos_embed")):
        if not explained.upstream(kind, None):
            continue
        w = acts[hook]
        vals = {"activation": torch.ones(w.shape[:2]), "write_magnitude": w.norm(dim=-1),
                "direct_effect": dot_read(w, kind, None) if resid_read else torch.zeros(w.shape[:2]),
                "total_effect": (w * grad[hook]).sum(-1)}
        blocks.append(Block(kind, None, None, _at_positions(vals, valid)))

    for layer in range(model.cfg.n_layers):
        attn = model.h[layer].attn
        if explained.upstream("attn_head", layer):
            point = attn_plan[layer]
            if point is None:
                p = acts[f"blocks.{layer}.attn.hook_pattern"]                 # [B, H, Q, K]
                v = acts[f"blocks.{layer}.attn.hook_v"]                       # [B, K, H, dh]
                vo = torch.einsum("bkhe,hed->bkhd", v, attn.W_O)              # [B, K, H, d]
                B, K, H, d = vo.shape
                Q = p.shape[2]
                direct_ok = explained.direct_writer("attn_head", layer)
                # vo dotted with the output gradient (and the read gradient) in one matmul
                reads = grad[f"blocks.{layer}.hook_attn_out"]                 # [B, Q, d]
                if direct_ok:
                    reads = torch.cat([reads, g_read], 1)                       # [B, 2Q, d]
                dots = torch.bmm(reads, vo.reshape(B, K * H, d).transpose(1, 2)).view(B, -1, K, H).permute(0, 3, 1, 2)
                total = p * dots[:, :, :Q]                                      # [B, H, Q, K]
                direct = p * dots[:, :, Q:] if direct_ok else torch.zeros_like(p)
                wm = p * vo.norm(dim=-1).permute(0, 2, 1)[:, :, None, :]
                pair_ok = (valid[:, None, :, None] & valid[:, None, None, :]
                           & torch.ones(p.shape[-2:], dtype=torch.bool).tril()[None, None])
                pair_ok = pair_ok.expand_as(p)
                vals = {"activation": p, "write_magnitude": wm, "direct_effect": direct, "total_effect": total}
                blocks.append(Block("attn_head", layer, None, _masked(vals, pair_ok), attention_prob=p))
                if direct_ok:
                    bias_direct += (attn.c_proj.bias * g_read).sum((-1, -2))
            else:
                blk, b = _sae_blocks(engine, point, layer, "attn", acts, grad, g_read, explained, valid)
                blocks += blk
                bias_direct += b
        if explained.upstream("mlp_neuron", layer):
            point = mlp_plan[layer]
            mlp = model.h[layer].mlp
            if point is None:
                a = acts[f"blocks.{layer}.mlp.hook_post"]                     # [B, N, M]
                W_out = mlp.c_proj.weight                                       # [M, d]
                total = a * grad[f"blocks.{layer}.mlp.hook_post"]
                if explained.read_space == "mlp_post" and layer == explained.max_layer:
                    direct = a * g_read
                elif explained.direct_writer("mlp_neuron", layer):
                    direct = a * (g_read @ W_out.T)
                else:
                    direct = torch.zeros_like(a)
                wm = a.abs() * W_out.norm(dim=-1)
                vals = {"activation": a, "write_magnitude": wm, "direct_effect": direct, "total_effect": total}
                blocks.append(Block("mlp_neuron", layer, None, _at_positions(vals, valid)))
                if explained.direct_writer("mlp_neuron", layer) and explained.read_space != "mlp_post":
                    bias_direct += (mlp.c_proj.bias * g_read).sum((-1, -2))
            else:
                blk, b = _sae_blocks(engine, point, layer, "mlp", acts, grad, g_read, explained, valid)
                blocks += blk
                bias_direct += b
    return blocks, bias_direct


def _sae_blocks(engine, point, layer, side, acts, grad, g_read, explained, valid):
    """Latent and error blocks of the SAE at ``point``; returns (blocks, bias direct effect)."""
    model = engine.model
    sae = engine.saes[point]
    a = acts[f"{point}.hook_sae_acts_post"]                                   # [B, N, n]
    err = acts[f"{point}.hook_sae_error"]                                    # [B, N, d_in]
    norm = sae.input_norm(acts[f"{point}.hook_sae_input"])
    scale = norm.scale if norm.scale is not None else 1.0
    W_dec = sae.W_dec
    b_dec = sae.b_dec
    to_resid = None
    if point.endswith("mlp.hook_post"):
        to_resid = model.h[layer].mlp.c_proj.weight                         # [M, d]
        W_dec_res = W_dec @ to_resid
    else:
        W_dec_res = W_dec
    writes_direct = explained.direct_writer("mlp_neuron" if side == "mlp" else "attn_head", layer)
    scale_t = scale if isinstance(scale, torch.Tensor) else torch.tensor(scale)
    total = a * grad[f"{point}.hook_sae_acts_post"]
    direct = a * (g_read @ W_dec_res.T) * scale_t if writes_direct else torch.zeros_like(a)
    wm = a.abs() * W_dec_res.norm(dim=-1) * scale_t
    vals = {"activation": a, "write_magnitude": wm, "direct_effect": direct, "total_effect": total}
    blocks = [Block("sae_latent", layer, point, _at_positions(vals, valid))]
    err_res = err @ to_resid if to_resid is not None else err
    err_direct = (err_res * g_read).sum(-1) if writes_direct else torch.zeros(err.shape[:2])
    err_vals = {"activation": err_res.norm(dim=-1), "write_magnitude": err_res.norm(dim=-1),
                "direct_effect": err_direct, "total_effect": (err * grad[f"{point}.hook_sae_error"]).sum(-1)}
    blocks.append(Block("sae_error", layer, point, _at_positions(err_vals, valid)))
    bias = torch.zeros(a.shape[0])
    if writes_direct:
        b_res = (norm.apply(b_dec.expand_as(err)) if norm.scale is not None or norm.shift is not None else b_dec.expand_as(err))
        if to_resid is not None:
            b_res = b_res @ to_resid + model.h[layer].mlp.c_proj.bias
        bias = (b_res * g_read).sum(-1).sum(-1)
    return blocks, bias


# --- entry points -------------------------------------------------------------------------------
@dataclasses.dataclass
class NodeTensors:
    """Everything one attribution pass computes, before top-k selection."""

    prepared: PreparedPrompts
    explained: Explained
    logits: torch.Tensor          # [batch, vocab]: at each prompt's loss position
    scalars: torch.Tensor         # [batch]: the explained scalar per prompt
    blocks: list[Block]
    bias_direct: torch.Tensor     # [batch]: direct effect of every bias (and the final LN bias)
    loss_positions: list[int]


@dataclasses.dataclass
class _Planned:
    """One request made ready for a (possibly shared) forward/backward pass."""

    request: AttributionRequest
    prepared: PreparedPrompts
    interventions: list
    loss_expl: Explained
    explained: Explained
    mlp_plan: dict
    attn_plan: dict
    splice_points: list[str]

    @property
    def shareable(self) -> bool:
        """Can this request share a pass with others? (Traces add their own hooks: they run alone.)"""
        return self.request.trace is None

    def share_key(self) -> tuple:
        return (tuple(sorted(self.mlp_plan.items())), tuple(sorted(self.attn_plan.items())),
                tuple(self.splice_points))


def _tokenized(engine, request: AttributionRequest) -> PreparedPrompts:
    prepared = prepare_prompts(request.prompts, engine.model.cfg.n_ctx, request.alignment, request.positions)
    check_loss(request.loss, prepared.batch)
    return prepared


def _plan(engine, request: AttributionRequest, prepared: PreparedPrompts) -> _Planned:
    model = engine.model
    clean_cache: dict[str, torch.Tensor] = {}

    def clean_source(hook: str) -> torch.Tensor:
        if hook not in clean_cache:
            with torch.no_grad():
                _, cache = model.run_with_cache(prepared.tokens, prepared.mask, names=[hook],
                                                splices=engine.splices_for_hook(hook))
            clean_cache[hook] = cache[hook]
        return clean_cache[hook]

    interventions = compile_interventions(prepared, [p.interventions for p in request.prompts], model, engine.saes,
                                          engine.reference_activations, clean_source)
    loss_expl = loss_explained(model, prepared, request.loss)
    if request.trace is None:
        explained = loss_expl
    else:
        validate_node(request.trace.node, model, engine.saes, "trace.node")
        downstream = None
        if request.trace.through == "v":
            downstream = _downstream_gradient(engine, request, prepared, interventions, loss_expl)
        explained = trace_explained(model, prepared, request.trace, downstream)
    mlp_plan, attn_plan, splice_points = _layer_plan(engine, request, explained)
    return _Planned(request, prepared, interventions, loss_expl, explained, mlp_plan, attn_plan, splice_points)


def _shared_explained(members: list[_Planned], rows: list[slice]) -> Explained:
    """One Explained for a shared pass: every member's scalar on its own rows. Only loss explanations
    are shared, and those differ only in their scalar, positions and the logits they read."""
    first = members[0].explained
    columns = [m.explained.logit_columns for m in members]
    union = None if any(c is None for c in columns) else tuple(sorted(set().union(*columns)))
    # where each member's columns are among the shared pass's (all of them: its token ids)
    picks = [None if c is None else list(c) if union is None else [union.index(t) for t in c] for c in columns]

    def scalar(captured, logits):
        return torch.cat([m.explained.scalar({k: v[r] for k, v in captured.items()},
                                             logits[r] if pick is None else logits[r][..., pick])
                          for m, r, pick in zip(members, rows, picks)])
    return dataclasses.replace(first, scalar=scalar, positions=[p for m in members for p in m.explained.positions],
                               logit_columns=union)


@dataclasses.dataclass
class _SharedPass:
    """One forward/backward pass's node tensors for all its members' prompts (``rows[j]``: member
    ``j``'s rows of the batch)."""

    members: list[_Planned]
    rows: list[slice]
    prepared: PreparedPrompts
    logits: torch.Tensor          # [batch, vocab]
    scalars: torch.Tensor         # [batch]
    blocks: list[Block]
    bias_direct: torch.Tensor     # [batch], each member's logit-difference constant included

    def node_tensors(self) -> list[NodeTensors]:
        """Each member's own slice."""
        return [NodeTensors(m.prepared, m.explained, self.logits[r], self.scalars[r], [b.rows(r) for b in self.blocks],
                            self.bias_direct[r], m.loss_expl.positions) for m, r in zip(self.members, self.rows)]


def _run_shared(engine, members: list[_Planned]) -> _SharedPass:
    """One forward and one backward for every member (all shareable, same plan and width)."""
    if len(members) == 1:
        m = members[0]
        rows, explained, interventions, prepared = [slice(0, m.prepared.batch)], m.explained, m.interventions, m.prepared
    else:
        rows, interventions, start = [], [], 0
        for m in members:
            rows.append(slice(start, start + m.prepared.batch))
            interventions += [OnRows(iv, start, start + m.prepared.batch) for iv in m.interventions]
            start += m.prepared.batch
        explained = _shared_explained(members, rows)
        prepared = PreparedPrompts.concatenated([m.prepared for m in members])
    first = members[0]
    logit_positions = [p for m in members for p in m.loss_expl.positions]
    logits, scalars, acts, grad = _forward_backward(engine, prepared, interventions, explained, first.mlp_plan,
                                                    first.attn_plan, first.splice_points, logit_positions)
    # members share everything _blocks reads from ``explained`` (read point, upstream and direct
    # writers), so the node values are computed once for the whole batch
    blocks, bias_direct = _blocks(engine, prepared, explained, acts, grad, first.mlp_plan, first.attn_plan)
    for m, r in zip(members, rows):
        if m.request.trace is None:
            bias_direct[r] += logit_diff_constant(engine.model, m.request.loss)
    return _SharedPass(members, rows, prepared, logits, scalars, blocks, bias_direct)


def _shared_passes(engine, requests: list[AttributionRequest]
                   ) -> tuple[dict[int, Exception], list[tuple[list[int], _SharedPass]]]:
    """The requests' passes, sharing them where they can (same component choices, no trace): the
    errors of requests with bad input (by index), and each pass with its members' indices."""
    errors: dict[int, Exception] = {}
    tokenized: dict[int, PreparedPrompts] = {}
    for i, request in enumerate(requests):
        try:
            tokenized[i] = _tokenized(engine, request)
        except InvalidInputError as e:
            errors[i] = e
    width = max((p.width for p in tokenized.values()), default=0)
    groups: dict[tuple, list[tuple[int, _Planned]]] = {}
    for i, prepared in tokenized.items():
        request = requests[i]
        try:
            planned = _plan(engine, request, prepared.widened(width) if request.trace is None else prepared)
        except InvalidInputError as e:
            errors[i] = e
            continue
        key = planned.share_key() if planned.shareable else ("alone", i)
        groups.setdefault(key, []).append((i, planned))
    return errors, [([i for i, _ in members], _run_shared(engine, [m for _, m in members]))
                    for members in groups.values()]


def _per_request(engine, requests: list[AttributionRequest], results: Callable[[_SharedPass], list[T]]
                 ) -> list[T | Exception]:
    """``results`` of each shared pass (one per member), put back in the requests' order, with the
    errors of requests with bad input in their slots."""
    errors, passes = _shared_passes(engine, requests)
    out: list[T | Exception | None] = [errors.get(i) for i in range(len(requests))]
    for indices, shared in passes:
        for i, result in zip(indices, results(shared)):
            out[i] = result
    return out  # type: ignore[return-value]


def compute_node_tensors_many(engine, requests: list[AttributionRequest]) -> list[NodeTensors | Exception]:
    """Node tensors for several independent requests, sharing forward/backward passes where they can
    (same component choices, no trace). A request with bad input gets its error in its own slot; the
    others are unaffected. Each result equals the request's result alone up to float rounding."""
    return _per_request(engine, requests, _SharedPass.node_tensors)


def compute_node_tensors(engine, request: AttributionRequest) -> NodeTensors:
    (result,) = compute_node_tensors_many(engine, [request])
    if isinstance(result, Exception):
        raise result
    return result


def _answers(shared: _SharedPass) -> list[dict]:
    """The answers to a pass's members as plain JSON-ready data, in :class:`AttributionResult`'s
    shape (field for field, in its field order, so that serializing it gives the model's JSON).
    Node selection, predictions and token summaries run once over the whole batch."""
    prepared, rows = shared.prepared, [range(r.start, r.stop) for r in shared.rows]
    tokens = [gpt2_tokenizer().token_strs(ids) for ids in prepared.token_ids]
    summaries = token_summaries(shared.blocks, prepared, tokens)
    extra = [loss_token_ids(m.request.loss) for m, r in zip(shared.members, rows) for _ in r]
    preds = predictions(shared.logits, extra)
    tables = node_tables(shared.blocks, prepared, [(r, m.request.top_k) for m, r in zip(shared.members, rows)])
    scalars, bias_direct = float32_list(torch.stack([shared.scalars, shared.bias_direct]))
    answers = []
    for m, r, nodes in zip(shared.members, rows, tables):
        prompts = [{"tokens": tokens[i], "token_ids": prepared.token_ids[i], "loss": scalars[i],
                    "loss_position": m.explained.positions[j], "top_predictions": preds[i][0],
                    "bottom_predictions": preds[i][1], "target_predictions": preds[i][2],
                    "token_summaries": summaries[i], "bias_direct_effect": bias_direct[i]}
                   for j, i in enumerate(r)]
        answers.append({"explained": m.explained.description, "prompts": prompts, "nodes": nodes})
    return answers


def answers_many(engine, requests: list[AttributionRequest]) -> list[dict | Exception]:
    """The answers to several independent requests (see :func:`compute_node_tensors_many`) as
    :func:`_answers` data: what the server serializes straight to JSON. A request with bad input
    gets its error in its slot; if the shared work fails otherwise (a bug), each request is answered
    alone, so that only the one that causes it gets the error."""
    try:
        return _shared_answers(engine, requests)
    except Exception as e:
        if len(requests) == 1:
            return [e]
        log.warning("a shared attribution call failed (%s); answering its %d requests one by one", e, len(requests))
    out: list[dict | Exception] = []
    for request in requests:
        try:
            out += _shared_answers(engine, [request])
        except Exception as e:
            out.append(e)
    return out


def _shared_answers(engine, requests: list[AttributionRequest]) -> list[dict | Exception]:
    return _per_request(engine, requests, _answers)


def attribute_many(engine, requests: list[AttributionRequest]) -> list[AttributionResult | Exception]:
    """:func:`attribute` for several independent requests at once (see :func:`compute_node_tensors_many`)."""
    return [a if isinstance(a, Exception) else AttributionResult.model_validate(a)
            for a in answers_many(engine, requests)]


def attribute(engine, request: AttributionRequest) -> AttributionResult:
    (result,) = attribute_many(engine, [request])
    if isinstance(result, Exception):
        raise result
    return result


def _downstream_gradient(engine, request, prepared, interventions, loss_expl):
    """For tracing a head through its value: the gradient of the downstream node (or the loss) at the
    head's layer's attention output."""
    trace = request.trace
    layer = trace.node.layer
    down = trace.downstream
    if down is None:
        target = loss_expl
    else:
        if down.kind not in ("mlp_neuron", "sae_latent"):
            raise RequestError("the downstream node of a value trace must be an MLP neuron or an SAE latent",
                               field="trace.downstream.kind")
        validate_node(down, engine.model, engine.saes, "trace.downstream")
        if down.layer < layer:
            raise RequestError(f"the downstream node (layer {down.layer}) is before the head (layer {layer})",
                               field="trace.downstream.layer")
        from ..schemas import TraceSpec
        target = trace_explained(engine.model, prepared, TraceSpec(node=down, through="pre"))

    hook = f"blocks.{layer}.hook_attn_out"
    capture = _Capture(leaves=set())
    with torch.enable_grad():
        def leaf(x, ctx):
            return x.detach().requires_grad_(True)
        final = engine.model(prepared.tokens, prepared.mask,
                             fwd_hooks=[("hook_embed", leaf), *target.hooks, (hook, capture),
                                        *[(c, capture) for c in target.capture]],
                             interventions=interventions, splices=engine.splices(target.splice_points),
                             logit_positions=torch.tensor(loss_expl.positions), return_final=True)
        (g,) = torch.autograd.grad(target.scalar(capture.store, target.read_logits(engine.model, final)).sum(),
                                   [capture.store[hook]])
    return g.detach()
