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

import bisect
import dataclasses
import functools
import math

import torch

from mechscope.inference.errors import InvalidInputError
from mechscope.inference.hooks import HookContext
from mechscope.inference.interventions import OnRows

from .errors import RequestError
from .explained import Explained, logit_diff_constant, loss_explained, trace_explained
from .node_interventions import compile_interventions, validate_node
from .prompts import PreparedPrompts, check_loss, prepare_prompts, single_token_ids
from .schemas import (AttributionRequest, AttributionResult, NodeRow, NodeValues, PromptResult, TokenPrediction,
                      TokenSummary)

COLUMNS = ("activation", "write_magnitude", "direct_effect", "total_effect")


@dataclasses.dataclass
class Block:
    """All nodes of one component type in one layer, as ``[batch, *shape]`` value tensors.

    ``shape`` is (pos, index) for neurons/latents, (head, query, key) for heads, (pos,) for
    embeddings and SAE errors."""

    kind: str
    layer: int | None
    sae: str | None
    values: dict[str, torch.Tensor]    # column -> [batch, *shape]; NaN where the node does not exist
    attention_prob: torch.Tensor | None = None

    @functools.cached_property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values["activation"].shape[1:])

    def locate(self, flat: int) -> tuple[int, int, int | None]:
        """(index, position/query, key) of a flat index into ``shape``."""
        shape = self.shape
        if self.kind == "attn_head":
            rest, key = divmod(flat, shape[2])
            head, query = divmod(rest, shape[1])
            return head, query, key
        if len(shape) == 1:
            return 0, flat, None
        pos, index = divmod(flat, shape[1])
        return index, pos, None

    def flat_of(self, index: int, pos: int, key: int | None) -> int:
        if self.kind == "attn_head":
            coords = (index, pos, key)
        elif len(self.shape) == 1:
            coords = (pos,)
        else:
            coords = (pos, index)
        flat = 0
        for c, s in zip(coords, self.shape):
            flat = flat * s + c
        return flat


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
    n = engine.model.cfg.n_layer
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
    n = model.cfg.n_layer
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
        logits = model(prepared.tokens, prepared.mask, fwd_hooks=hooks, interventions=interventions,
                       splices=engine.splices(splice_points), logit_positions=torch.tensor(logit_positions))
        scalars = explained.scalar(capture.store, logits)
        tensors = list(capture.store.values())
        grads = torch.autograd.grad(scalars.sum(), tensors, allow_unused=True)
    grad = {name: (g if g is not None else torch.zeros_like(t))
            for name, t, g in zip(capture.store.keys(), tensors, grads)}
    acts = {name: t.detach() for name, t in capture.store.items()}
    return logits.detach()[:, 0], scalars.detach(), acts, grad


def _valid_positions(prepared: PreparedPrompts) -> torch.Tensor:
    return prepared.mask.bool()  # [batch, width]


def _blocks(engine, prepared, explained, acts, grad, mlp_plan, attn_plan) -> tuple[list[Block], torch.Tensor]:
    """Every node block plus the direct effect of all biases per prompt."""
    model = engine.model
    valid = _valid_positions(prepared)
    g_read = grad[explained.read_hook]                                  # [B, N, d_read]
    nan = torch.tensor(float("nan"))
    blocks: list[Block] = []
    bias_direct = torch.zeros(prepared.batch)
    resid_read = explained.read_space == "resid"

    def masked(values: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: torch.where(mask, v, nan) for k, v in values.items()}

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
        blocks.append(Block(kind, None, None, masked(vals, valid)))

    for layer in range(model.cfg.n_layer):
        attn = model.h[layer].attn
        if explained.upstream("attn_head", layer):
            point = attn_plan[layer]
            if point is None:
                p = acts[f"blocks.{layer}.attn.hook_pattern"]                 # [B, H, Q, K]
                v = acts[f"blocks.{layer}.attn.hook_v"]                       # [B, K, H, dh]
                vo = torch.einsum("bkhe,hed->bkhd", v, attn.W_O)              # [B, K, H, d]
                g_out = grad[f"blocks.{layer}.hook_attn_out"]                 # [B, Q, d]
                total = p * torch.einsum("bkhd,bqd->bhqk", vo, g_out)
                direct_ok = explained.direct_writer("attn_head", layer)
                direct = p * torch.einsum("bkhd,bqd->bhqk", vo, g_read) if direct_ok else torch.zeros_like(p)
                wm = p * vo.norm(dim=-1).permute(0, 2, 1)[:, :, None, :]
                pair_ok = (valid[:, None, :, None] & valid[:, None, None, :]
                           & torch.ones(p.shape[-2:], dtype=torch.bool).tril()[None, None])
                pair_ok = pair_ok.expand_as(p)
                vals = {"activation": p, "write_magnitude": wm, "direct_effect": direct, "total_effect": total}
                blocks.append(Block("attn_head", layer, None, masked(vals, pair_ok), attention_prob=p))
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
                blocks.append(Block("mlp_neuron", layer, None, masked(vals, valid[..., None].expand_as(a))))
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
    blocks = [Block("sae_latent", layer, point, {k: torch.where(valid[..., None].expand_as(a), v, float("nan"))
                                                 for k, v in vals.items()})]
    err_res = err @ to_resid if to_resid is not None else err
    err_direct = (err_res * g_read).sum(-1) if writes_direct else torch.zeros(err.shape[:2])
    err_vals = {"activation": err_res.norm(dim=-1), "write_magnitude": err_res.norm(dim=-1),
                "direct_effect": err_direct, "total_effect": (err * grad[f"{point}.hook_sae_error"]).sum(-1)}
    blocks.append(Block("sae_error", layer, point, {k: torch.where(valid, v, float("nan")) for k, v in err_vals.items()}))
    bias = torch.zeros(a.shape[0])
    if writes_direct:
        b_res = (norm.apply(b_dec.expand_as(err)) if norm.scale is not None or norm.shift is not None else b_dec.expand_as(err))
        if to_resid is not None:
            b_res = b_res @ to_resid + model.h[layer].mlp.c_proj.bias
        bias = (b_res * g_read).sum(-1).sum(-1)
    return blocks, bias


# --- tables -------------------------------------------------------------------------------------
def _node_key(block: Block, index: int, slot_q: int, slot_k: int | None) -> str:
    parts = [block.kind]
    if block.layer is not None:
        parts.append(f"L{block.layer}")
    if block.sae:
        parts.append(block.sae)
    if block.kind in ("attn_head", "mlp_neuron", "sae_latent"):
        parts.append(f"#{index}")
    parts.append(f"@{slot_q}")
    if slot_k is not None:
        parts.append(f"k{slot_k}")
    return ":".join(parts)


def _select(blocks: list[Block], prepared: PreparedPrompts, top_k: int) -> list[tuple[int, int, int, int | None]]:
    """(block id, index, slot_q, slot_k) of the union over prompts of each column's top and bottom k."""
    chosen: dict[tuple, None] = {}
    sizes = [math.prod(b.shape) for b in blocks]
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    for col in COLUMNS:
        flat = torch.cat([b.values[col].reshape(prepared.batch, -1) for b in blocks], dim=1)
        for i in range(prepared.batch):
            row = flat[i]
            finite = ~torch.isnan(row)
            k = min(top_k, int(finite.sum()))
            picks = [torch.where(finite, row, float("-inf")).topk(k).indices]
            if col != "write_magnitude":
                picks.append(torch.where(finite, row, float("inf")).topk(k, largest=False).indices)
            for f in torch.cat(picks).tolist():
                bid = bisect.bisect_right(offsets, f) - 1
                index, q, kpos = blocks[bid].locate(f - offsets[bid])
                slot_q = prepared.slots[i][q]
                slot_k = prepared.slots[i][kpos] if kpos is not None else None
                chosen[(bid, index, slot_q, slot_k)] = None
    return list(chosen)


def _rows(blocks, prepared, selected) -> list[NodeRow]:
    # Where each selected node sits in each prompt, then one gather per block for all the values.
    located = []      # per selected node: [(prompt, flat index) or None] per prompt
    wanted: dict[int, list[tuple[int, int]]] = {}
    for bid, index, slot_q, slot_k in selected:
        block, spots = blocks[bid], []
        for i in range(prepared.batch):
            q = prepared.position_of_slot(i, slot_q)
            k = prepared.position_of_slot(i, slot_k) if slot_k is not None else None
            if q is None or (slot_k is not None and k is None):
                spots.append((q, k, None))
                continue
            f = block.flat_of(index, q, k)
            wanted.setdefault(bid, []).append((i, f))
            spots.append((q, k, f))
        located.append(spots)
    gathered: dict[tuple[int, int, int], list[float]] = {}
    for bid, pairs in wanted.items():
        block = blocks[bid]
        columns = [block.values[c] for c in COLUMNS]
        if block.attention_prob is not None:
            columns.append(block.attention_prob)
        i_t = torch.tensor([i for i, _ in pairs])
        f_t = torch.tensor([f for _, f in pairs])
        picked = torch.stack([c.reshape(prepared.batch, -1)[i_t, f_t] for c in columns], -1)   # [pairs, columns]
        for (i, f), nums in zip(pairs, picked.tolist()):
            gathered[(bid, i, f)] = nums
    rows = []
    for (bid, index, slot_q, slot_k), spots in zip(selected, located):
        block = blocks[bid]
        positions, key_positions, values = [], [], []
        for i, (q, k, f) in enumerate(spots):
            positions.append(q)
            key_positions.append(k)
            nums = gathered[(bid, i, f)] if f is not None else None
            if nums is None or any(math.isnan(x) for x in nums[:len(COLUMNS)]):
                values.append(None)
                continue
            prob = nums[len(COLUMNS)] if block.attention_prob is not None else None
            values.append(NodeValues.model_construct(**dict(zip(COLUMNS, nums)), attention_prob=prob))
        rows.append(NodeRow(key=_node_key(block, index, slot_q, slot_k), kind=block.kind, layer=block.layer,
                            index=index, sae=block.sae, positions=positions,
                            key_positions=key_positions if block.kind == "attn_head" else None, values=values))
    rows.sort(key=lambda r: -max((abs(v.total_effect) for v in r.values if v is not None), default=0.0))
    return rows


def _token_summaries(blocks, prepared, i) -> list[TokenSummary]:
    n = prepared.lengths[i]
    sums = {k: torch.zeros(n) for k in ("embeddings", "mlp", "attention_by_query", "attention_by_key")}
    direct = {k: torch.zeros(n) for k in sums}

    def add(target: str, tensor_total: torch.Tensor, tensor_direct: torch.Tensor) -> None:
        sums[target] += torch.nan_to_num(tensor_total[:n])
        direct[target] += torch.nan_to_num(tensor_direct[:n])

    for b in blocks:
        te, de = b.values["total_effect"][i], b.values["direct_effect"][i]
        if b.kind in ("embedding", "pos_embedding"):
            add("embeddings", te, de)
        elif b.kind == "attn_head":
            add("attention_by_query", torch.nan_to_num(te).sum((0, 2)), torch.nan_to_num(de).sum((0, 2)))
            add("attention_by_key", torch.nan_to_num(te).sum((0, 1)), torch.nan_to_num(de).sum((0, 1)))
        elif b.kind in ("sae_latent", "sae_error") and b.sae and b.sae.endswith("hook_attn_out"):
            t = te.nansum(-1) if te.dim() == 2 else te
            d = de.nansum(-1) if de.dim() == 2 else de
            add("attention_by_query", t, d)
        else:
            add("mlp", te.nansum(-1) if te.dim() == 2 else te, de.nansum(-1) if de.dim() == 2 else de)
    tokens = [gpt2_token(t) for t in prepared.token_ids[i]]
    columns = {**{k: v.tolist() for k, v in sums.items()}, **{f"direct_{k}": v.tolist() for k, v in direct.items()}}
    # model_construct: these are floats we just computed, so validating thousands of them again is waste
    return [TokenSummary.model_construct(token=tokens[p], **{k: v[p] for k, v in columns.items()}) for p in range(n)]


def gpt2_token(token_id: int) -> str:
    from mechscope.inference import gpt2_tokenizer
    return gpt2_tokenizer().token_str(token_id)


def predictions(logits_row: torch.Tensor, k: int = 10, extra: list[int] = ()) -> tuple[list, list, list]:
    """Top and bottom ``k`` next tokens and the ``extra`` ones; rank 1 = highest logit (tied tokens
    share the best rank among them)."""
    logp = logits_row.log_softmax(-1)
    k = min(k, logits_row.shape[-1])
    top = logits_row.topk(k).indices.tolist()
    bottom = logits_row.topk(k, largest=False).indices.tolist()

    def pred(t: int) -> TokenPrediction:
        rank = int((logits_row > logits_row[t]).sum()) + 1
        return TokenPrediction(token=gpt2_token(t), token_id=t, logit=float(logits_row[t]), prob=float(logp[t].exp()),
                               rank=rank)

    return [pred(t) for t in top], [pred(t) for t in bottom], [pred(t) for t in extra]


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
    prepared = prepare_prompts(request.prompts, engine.model.cfg.n_positions, request.alignment, request.positions)
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
    are shared, and those differ only in their scalar and positions."""
    first = members[0].explained

    def scalar(captured, logits):
        return torch.cat([m.explained.scalar({k: v[r] for k, v in captured.items()}, logits[r])
                          for m, r in zip(members, rows)])
    return dataclasses.replace(first, scalar=scalar, positions=[p for m in members for p in m.explained.positions])


def _run_shared(engine, members: list[_Planned]) -> list[NodeTensors]:
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
    out = []
    for m, r in zip(members, rows):
        acts_m = {k: v[r] for k, v in acts.items()}
        grad_m = {k: v[r] for k, v in grad.items()}
        blocks, bias_direct = _blocks(engine, m.prepared, m.explained, acts_m, grad_m, m.mlp_plan, m.attn_plan)
        if m.request.trace is None:
            bias_direct = bias_direct + logit_diff_constant(engine.model, m.request.loss)
        out.append(NodeTensors(m.prepared, m.explained, logits[r], scalars[r], blocks, bias_direct,
                               m.loss_expl.positions))
    return out


def compute_node_tensors_many(engine, requests: list[AttributionRequest]) -> list[NodeTensors | Exception]:
    """Node tensors for several independent requests, sharing forward/backward passes where they can
    (same component choices, no trace). A request with bad input gets its error in its own slot; the
    others are unaffected. Each result equals the request's result alone up to float rounding."""
    out: list[NodeTensors | Exception | None] = [None] * len(requests)
    tokenized: dict[int, PreparedPrompts] = {}
    for i, request in enumerate(requests):
        try:
            tokenized[i] = _tokenized(engine, request)
        except InvalidInputError as e:
            out[i] = e
    width = max((p.width for p in tokenized.values()), default=0)
    groups: dict[tuple, list[tuple[int, _Planned]]] = {}
    for i, prepared in tokenized.items():
        request = requests[i]
        try:
            planned = _plan(engine, request, prepared.widened(width) if request.trace is None else prepared)
        except InvalidInputError as e:
            out[i] = e
            continue
        key = planned.share_key() if planned.shareable else ("alone", i)
        groups.setdefault(key, []).append((i, planned))
    for members in groups.values():
        for (i, _), tensors in zip(members, _run_shared(engine, [m for _, m in members])):
            out[i] = tensors
    return out  # type: ignore[return-value]


def compute_node_tensors(engine, request: AttributionRequest) -> NodeTensors:
    (result,) = compute_node_tensors_many(engine, [request])
    if isinstance(result, Exception):
        raise result
    return result


def _result(request: AttributionRequest, t: NodeTensors) -> AttributionResult:
    prepared = t.prepared
    rows = _rows(t.blocks, prepared, _select(t.blocks, prepared, request.top_k))
    extra: list[int] = []
    if request.loss.kind in ("logit_diff", "log_prob"):
        extra = single_token_ids(request.loss.targets, "loss.targets")
        if request.loss.kind == "logit_diff":
            extra += single_token_ids(request.loss.distractors, "loss.distractors")
    results = []
    for i in range(prepared.batch):
        top, bottom, targets = predictions(t.logits[i], extra=extra)
        results.append(PromptResult(
            tokens=[gpt2_token(x) for x in prepared.token_ids[i]], token_ids=prepared.token_ids[i],
            loss=float(t.scalars[i]), loss_position=t.explained.positions[i], top_predictions=top,
            bottom_predictions=bottom, target_predictions=targets,
            token_summaries=_token_summaries(t.blocks, prepared, i), bias_direct_effect=float(t.bias_direct[i])))
    return AttributionResult(explained=t.explained.description, prompts=results, nodes=rows)


def attribute_many(engine, requests: list[AttributionRequest]) -> list[AttributionResult | Exception]:
    """:func:`attribute` for several independent requests at once (see :func:`compute_node_tensors_many`)."""
    out: list[AttributionResult | Exception] = []
    for request, t in zip(requests, compute_node_tensors_many(engine, requests)):
        if isinstance(t, Exception):
            out.append(t)
            continue
        try:
            out.append(_result(request, t))
        except InvalidInputError as e:
            out.append(e)
    return out


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
        from .schemas import TraceSpec
        target = trace_explained(engine.model, prepared, TraceSpec(node=down, through="pre"))

    hook = f"blocks.{layer}.hook_attn_out"
    capture = _Capture(leaves=set())
    with torch.enable_grad():
        def leaf(x, ctx):
            return x.detach().requires_grad_(True)
        logits = engine.model(prepared.tokens, prepared.mask,
                              fwd_hooks=[("hook_embed", leaf), *target.hooks, (hook, capture),
                                         *[(c, capture) for c in target.capture]],
                              interventions=interventions, splices=engine.splices(target.splice_points),
                              logit_positions=torch.tensor(loss_expl.positions))
        (g,) = torch.autograd.grad(target.scalar(capture.store, logits).sum(), [capture.store[hook]])
    return g.detach()
