"""What a node table explains — its *objective* (TDB: the direction of interest): the loss, or one
traced node (README: Glossary).

An :class:`Objective` says which scalar to differentiate (one per prompt), which hooks the pass
needs (frozen LayerNorm scales, detached query/key sides), where the objective scalar *reads* the
residual stream (direct effects are write vectors dotted with the gradient there), and which
components can appear upstream of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..errors import RequestError
from .prompts import PreparedPrompts, single_token_ids
from ..schemas import LossSpec, NodeRef, TraceSpec


def _detach(x, ctx):
    return x.detach()


@dataclasses.dataclass
class Objective:
    description: str
    hooks: list[tuple[str, Callable]]           # extra forward hooks (freeze / detach)
    capture: list[str]                           # activations the scalar needs
    read_hook: str                               # direct effects: gradient w.r.t. this activation
    read_space: str                              # "resid", "mlp_out", "attn_out" or "mlp_post"
    max_layer: int                               # components of layers > max_layer are not upstream
    include_mlp_at_max: bool                     # is the MLP of max_layer upstream?
    include_attn_at_max: bool
    # (captured, logits at the loss positions [batch, 1, n]) -> [batch]; the n columns are
    # ``logit_columns`` in that order, or the whole vocabulary when it is None (see read_logits)
    scalar: Callable[[dict, torch.Tensor], torch.Tensor]
    positions: list[int]                         # per prompt, the position the scalar is read at
    splice_points: list[str] = dataclasses.field(default_factory=list)  # SAEs that must be spliced
    # token ids whose logits the scalar reads (the pass backpropagates through those columns of the
    # unembedding only); None: it may read them all (a softmax)
    logit_columns: tuple[int, ...] | None = None
    # the true gradient (issue 23, total_effect_ln='live'): the pass freezes neither ``ln_final``'s
    # scale nor the SAE errors (they follow their SAE's input, as in a real ablation: see
    # sae_errors.live_error_hooks); direct effects read the frozen-scale gradient instead, computed
    # from the gradient at ``ln_final.hook_normalized`` (see frozen_read_gradient)
    live: bool = False

    def read_logits(self, model, final: torch.Tensor) -> torch.Tensor:
        """The logits ``scalar`` takes, unembedded from ``final`` (the final LayerNorm's output, as
        ``model(..., return_final=True)`` gives it): only ``logit_columns``, or all when None. The
        unembedding is the biggest matrix of a small model: a logit difference reads 2 of its
        columns, a trace none, and the backward pass goes through only those."""
        if self.logit_columns is None:
            return model.unembed(final)
        return final @ model.W_U[:, list(self.logit_columns)]

    def writes_directly(self, kind: str, layer: int | None) -> bool:
        """Does a component of this kind/layer write straight into the read space?"""
        if self.read_space == "resid":
            return self.is_upstream(kind, layer)
        if kind in ("embedding", "pos_embedding") or layer != self.max_layer:
            return False
        if self.read_space in ("mlp_out", "mlp_post"):
            return kind in ("mlp_neuron",) or kind == "mlp_sae"
        return kind in ("attn_head",)

    def is_upstream(self, kind: str, layer: int | None) -> bool:
        if layer is None:
            return True
        if layer < self.max_layer:
            return True
        if layer > self.max_layer:
            return False
        return self.include_mlp_at_max if kind in ("mlp_neuron", "mlp_sae") else self.include_attn_at_max


def _resolve_node_positions(prepared: PreparedPrompts, node: NodeRef, field: str) -> tuple[list[int], list[int | None]]:
    def per_prompt(position: int, f: str) -> list[int]:
        if position < 0:
            return [prepared.resolve_position(i, position, f) for i in range(prepared.batch)]
        p0 = prepared.resolve_position(0, position, f)
        out = []
        for i in range(prepared.batch):
            p = prepared.aligned_position(0, p0, i)
            if p is None:
                raise RequestError(f"position {position} of prompt 0 has no aligned position in prompt {i}", field=f)
            out.append(p)
        return out

    qs = per_prompt(node.position, f"{field}.position")
    ks: list[int | None] = [None] * prepared.batch
    if node.key_position is not None:
        ks = per_prompt(node.key_position, f"{field}.key_position")
        for q, k in zip(qs, ks):
            if k > q:
                raise RequestError(f"key position {k} comes after query position {q}", field=f"{field}.key_position")
    return qs, ks


# --- the loss -----------------------------------------------------------------------------------
def loss_scalar(loss: LossSpec, positions: torch.Tensor, columns: tuple[int, ...] | None = None
                ) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """``fn(logits) -> [batch]`` computing the loss of each row at ``positions`` (a [batch] tensor, or
    a 0-d tensor for the same position in every row), and a description. ``columns``: the token ids
    whose logits ``logits`` holds, in that order (a logit difference's :func:`logit_columns`); the
    whole vocabulary when None."""
    def at(logits: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(logits.shape[0])
        return logits[rows, positions.expand(logits.shape[0])]

    if columns is not None and loss.kind != "logit_diff":
        raise AssertionError(f"a {loss.kind} loss reads every logit")
    if loss.kind == "logit_diff":
        targets = single_token_ids(loss.targets, "loss.targets")
        distractors = single_token_ids(loss.distractors, "loss.distractors")
        if columns is not None:
            targets, distractors = [columns.index(t) for t in targets], [columns.index(d) for d in distractors]

        def fn(logits):
            a = at(logits)
            return a[:, targets].mean(-1) - a[:, distractors].mean(-1)
        return fn, f"logit diff mean{loss.targets} - mean{loss.distractors}"
    if loss.kind == "log_prob":
        targets = single_token_ids(loss.targets, "loss.targets")
        return (lambda logits: at(logits).log_softmax(-1)[:, targets].logsumexp(-1)), \
            f"log P(next token in {loss.targets})"
    ref = loss.reference_prompt

    def kl(logits):
        logp = at(logits).log_softmax(-1)
        p_ref = logp[ref].detach()
        return (p_ref.exp() * (p_ref - logp)).sum(-1)
    return kl, f"KL(prompt {ref} || prompt) of the next-token distribution"


def loss_objective(model, prepared: PreparedPrompts, loss: LossSpec, ln: str = "frozen") -> Objective:
    """The loss as objective. ``ln`` (the request's ``total_effect_ln``): 'frozen' holds the final
    LayerNorm scale constant in the pass (every gradient is the frozen-scale one, SAE errors are fixed
    nodes); 'live' leaves it and the SAE errors live (total effects use the true gradient of the
    model's loss) and captures the final LayerNorm's normalised input
    and scale, from which :func:`frozen_read_gradient` gives direct effects their frozen-scale gradient."""
    n = model.cfg.n_layers
    positions = [prepared.resolve_position(i, loss.position, "loss.position") for i in range(prepared.batch)]
    columns = logit_columns(loss)
    fn, what = loss_scalar(loss, torch.tensor(0), columns)  # the pass unembeds only the loss positions
    live = ln == "live"
    return Objective(
        description=f"loss: {what} at position {loss.position}",
        hooks=[] if live else [("ln_final.hook_scale", _detach)],
        capture=list(FINAL_LN_HOOKS) if live else [], read_hook=f"blocks.{n - 1}.hook_resid_post",
        read_space="resid", max_layer=n - 1, include_mlp_at_max=True, include_attn_at_max=True,
        scalar=lambda captured, logits: fn(logits), positions=positions, logit_columns=columns,
        live=live,
    )


FINAL_LN_HOOKS = ("ln_final.hook_normalized", "ln_final.hook_scale")


def frozen_read_gradient(acts: dict[str, torch.Tensor], grad: dict[str, torch.Tensor]) -> torch.Tensor:
    """The gradient at the final residual with the final LayerNorm scale held constant, from a pass
    that left it live: the LayerNorm computes ``n = (x - mean x) / s``, so with ``s`` constant
    ``dL/dx = centre(dL/dn) / s`` (centring: the mean over d_model removed). ``[batch, pos, d_model]``."""
    g_norm = grad["ln_final.hook_normalized"]
    return (g_norm - g_norm.mean(-1, keepdim=True)) / acts["ln_final.hook_scale"]


def loss_token_ids(loss: LossSpec) -> list[int]:
    """The tokens a loss names: its targets, then a logit difference's distractors (none for KL)."""
    if loss.kind == "kl":
        return []
    ids = single_token_ids(loss.targets, "loss.targets")
    if loss.kind == "logit_diff":
        ids += single_token_ids(loss.distractors, "loss.distractors")
    return ids


def logit_columns(loss: LossSpec) -> tuple[int, ...] | None:
    """The logits a loss reads, sorted and distinct: a logit difference only its targets' and
    distractors'; the others take a softmax over all of them (None)."""
    return tuple(sorted(set(loss_token_ids(loss)))) if loss.kind == "logit_diff" else None


def logit_diff_constant(model, loss: LossSpec) -> float:
    """The part of the logit difference that no node writes: the final LayerNorm's bias."""
    if loss.kind != "logit_diff":
        return 0.0
    t = single_token_ids(loss.targets, "loss.targets")
    d = single_token_ids(loss.distractors, "loss.distractors")
    u = model.W_U[:, t].mean(-1) - model.W_U[:, d].mean(-1)
    return float(model.ln_f.bias @ u)


# --- traced nodes -------------------------------------------------------------------------------
def trace_objective(model, prepared: PreparedPrompts, trace: TraceSpec,
                    downstream_grad: torch.Tensor | None = None) -> Objective:
    """The objective of tracing ``trace.node`` upstream: a neuron's or latent's pre-activation, or
    a head's attention logit (through its query, key or both) or its write through its value.
    ``downstream_grad`` (value traces only): the gradient ``[batch, pos, d_model]`` of the
    downstream node — or the loss — at the head's layer's attention output."""
    node, through = trace.node, trace.through
    qs, ks = _resolve_node_positions(prepared, node, "trace.node")
    if node.kind in ("mlp_neuron", "sae_latent"):
        if through != "pre":
            what = "an MLP neuron" if node.kind == "mlp_neuron" else "an SAE latent"
            raise RequestError(f"{what} is traced through its pre-activation ('pre')", field="trace.through")
        return _neuron_trace(node, qs) if node.kind == "mlp_neuron" else _latent_trace(node, qs)
    if node.kind != "attn_head":
        raise RequestError(f"{node.kind} nodes cannot be traced (neurons, latents and heads can)", field="trace.node.kind")
    if node.key_position is None:
        raise RequestError("tracing a head needs key_position (the (query, key) pair to explain)",
                           field="trace.node.key_position")
    if through in ("q", "k", "qk"):
        return _attention_logit_trace(node, through, qs, ks)
    if through != "v":
        raise RequestError(f"a head is traced through 'q', 'k', 'qk' or 'v', not {through!r}", field="trace.through")
    if downstream_grad is None:
        raise AssertionError("tracing through the value needs the downstream gradient")
    return _value_trace(model, trace, qs, ks, downstream_grad)


def _neuron_trace(node: NodeRef, qs: list[int]) -> Objective:
    L, rows, q_t = node.layer, torch.arange(len(qs)), torch.tensor(qs)
    hook = f"blocks.{L}.mlp.hook_pre"
    return Objective(
        description=f"pre-activation of neuron {node.index} in layer {L} at position {node.position}",
        hooks=[(f"blocks.{L}.ln2.hook_scale", _detach)], capture=[hook], read_hook=f"blocks.{L}.hook_resid_mid",
        read_space="resid", max_layer=L, include_mlp_at_max=False, include_attn_at_max=True,
        scalar=lambda c, logits: c[hook][rows, q_t, node.index], positions=qs, logit_columns=())


def _latent_trace(node: NodeRef, qs: list[int]) -> Objective:
    rows, q_t, point = torch.arange(len(qs)), torch.tensor(qs), node.sae
    space = "attn_out" if point.endswith("hook_attn_out") else "mlp_post" if point.endswith("mlp.hook_post") \
        else "mlp_out" if point.endswith("hook_mlp_out") else None
    if space is None:
        raise RequestError(f"tracing latents of an SAE at {point!r} is not supported (MLP and attention SAEs are)",
                           field="trace.node.sae")
    hook = f"{point}.hook_sae_acts_pre"
    return Objective(
        description=f"pre-activation of latent {node.index} of the SAE at {point} at position {node.position}",
        hooks=[], capture=[hook], read_hook=f"{point}.hook_sae_input", read_space=space, max_layer=node.layer,
        include_mlp_at_max=space != "attn_out", include_attn_at_max=True,
        scalar=lambda c, logits: c[hook][rows, q_t, node.index], positions=qs, splice_points=[point], logit_columns=())


def _head_base(node: NodeRef, qs: list[int]) -> dict:
    """What every head trace shares: it reads the residual stream before the head's layer."""
    L = node.layer
    return dict(read_hook=f"blocks.{L}.hook_resid_pre", read_space="resid", max_layer=L,
                include_mlp_at_max=False, include_attn_at_max=False, positions=qs, logit_columns=())


def _attention_logit_trace(node: NodeRef, through: str, qs: list[int], ks: list[int | None]) -> Objective:
    L, h, rows = node.layer, node.index, torch.arange(len(qs))
    q_t, k_t = torch.tensor(qs), torch.tensor(ks)
    hook = f"blocks.{L}.attn.hook_attn_scores"
    hooks = [(f"blocks.{L}.ln1.hook_scale", _detach)]
    if through == "q":
        hooks.append((f"blocks.{L}.attn.hook_k", _detach))
    elif through == "k":
        hooks.append((f"blocks.{L}.attn.hook_q", _detach))
    side = {"q": "query", "k": "key", "qk": "query and key"}[through]
    return Objective(
        description=f"attention logit of head {h} in layer {L} from {node.position} to {node.key_position} "
                    f"through the {side}",
        hooks=hooks, capture=[hook], scalar=lambda c, logits: c[hook][rows, h, q_t, k_t], **_head_base(node, qs))


def _value_trace(model, trace: TraceSpec, qs: list[int], ks: list[int | None], downstream_grad: torch.Tensor
                 ) -> Objective:
    node = trace.node
    L, h, rows = node.layer, node.index, torch.arange(len(qs))
    q_t, k_t = torch.tensor(qs), torch.tensor(ks)
    g_q = downstream_grad[rows, q_t]   # [batch, d_model]
    pattern_hook, v_hook = f"blocks.{L}.attn.hook_pattern", f"blocks.{L}.attn.hook_v"
    W_O = model.h[L].attn.W_O[h]      # [d_head, d_model]

    def scalar(c, logits):
        p = c[pattern_hook][rows, h, q_t, k_t].detach()
        v = c[v_hook][rows, k_t, h]    # [batch, d_head]
        return p * ((v @ W_O) * g_q).sum(-1)

    down = trace.downstream
    down = "the loss" if down is None else f"{down.kind} {down.index} (layer {down.layer})"
    return Objective(
        description=f"write of head {h} in layer {L} from {node.position} to {node.key_position} through the value, "
                    f"projected on the gradient of {down}",
        hooks=[(f"blocks.{L}.ln1.hook_scale", _detach)], capture=[pattern_hook, v_hook], scalar=scalar,
        **_head_base(node, qs))
