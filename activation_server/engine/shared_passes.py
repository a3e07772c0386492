"""Shared passes: several node-table requests answered by one forward and one backward pass.

A request is *planned* (tokenized, its interventions compiled, its objective and per-layer
components chosen); requests with the same components and no trace share a pass, widened to the
same width, each reading its own rows; the answers (node selection, predictions, token summaries)
are built once over the whole batch. :func:`answers_many` is the entry point (the engine's
``attribute*`` methods and the compute processes call it); :func:`node_tensors` gives one request's
raw node values (graphs, head effects and tests use it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch

from mechscope.inference import gpt2_tokenizer
from mechscope.inference.errors import InvalidInputError
from mechscope.inference.interventions import OnRows

from ..errors import RequestError
from ..schemas import AttributionRequest, TraceSpec
from .exact_effects import AblatedNode, exact_effects
from .graddrop import graddrop_scores
from .logit_space import softmax_total_effects
from .interventions import compile_interventions, validate_node
from .json_floats import float32_list
from .node_table import NodeGroup, node_tables, token_summaries
from .node_values import Capture, PassValues, forward_backward, layer_plan, node_groups
from .objective import Objective, logit_diff_constant, loss_objective, loss_token_ids, trace_objective
from .predictions import predictions
from .prompts import PreparedPrompts, check_loss, prepare_prompts

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass
class NodeTensors:
    """Everything one attribution pass computes, before top-k selection."""

    prepared: PreparedPrompts
    objective: Objective
    logits: torch.Tensor          # [batch, vocab]: at each prompt's loss position
    scalars: torch.Tensor         # [batch]: the objective scalar per prompt
    groups: list[NodeGroup]
    bias_direct: torch.Tensor     # [batch]: direct effect of every bias (and the final LN bias)
    loss_positions: list[int]


@dataclasses.dataclass
class _Planned:
    """One request made ready for a (possibly shared) forward/backward pass."""

    request: AttributionRequest
    prepared: PreparedPrompts
    interventions: list
    loss_objective: Objective
    objective: Objective
    mlp_plan: dict
    attn_plan: dict
    splice_points: list[str]

    @property
    def can_share(self) -> bool:
        """Can this request share a pass with others? (Traces add their own hooks: they run alone.)"""
        return self.request.trace is None

    def share_key(self) -> tuple:
        return (tuple(sorted(self.mlp_plan.items())), tuple(sorted(self.attn_plan.items())),
                tuple(self.splice_points), self.objective.live)


def _tokenized(engine: Engine, request: AttributionRequest) -> PreparedPrompts:
    prepared = prepare_prompts(request.prompts, engine.model.cfg.n_ctx, request.alignment, request.positions)
    check_loss(request.loss, prepared.batch)
    return prepared


def _plan(engine: Engine, request: AttributionRequest, prepared: PreparedPrompts) -> _Planned:
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
    ln = request.total_effect_ln if request.trace is None else "frozen"   # traces keep their frozen read point
    for_loss = loss_objective(model, prepared, request.loss, ln)
    if request.total_effect_softmax and request.loss.kind != "log_prob":
        raise RequestError(f"total_effect_softmax is for log_prob losses (a {request.loss.kind} loss is linear in the "
                           "logits or reads a reference prompt)", field="total_effect_softmax")
    if request.trace is None:
        objective = for_loss
    else:
        for field in ("exact_top_n", "graddrop", "total_effect_softmax"):
            if getattr(request, field):
                raise RequestError(f"{field} measures effects on the loss: it cannot be used with a trace", field=field)
        validate_node(request.trace.node, model, engine.saes, "trace.node")
        downstream = None
        if request.trace.through == "v":
            downstream = _downstream_gradient(engine, request, prepared, interventions, for_loss)
        objective = trace_objective(model, prepared, request.trace, downstream)
    mlp_plan, attn_plan, splice_points = layer_plan(engine, request, objective)
    return _Planned(request, prepared, interventions, for_loss, objective, mlp_plan, attn_plan, splice_points)


def plan_request(engine: Engine, request: AttributionRequest) -> _Planned:
    """One request planned alone (its own width): for passes beside the node table's."""
    return _plan(engine, request, _tokenized(engine, request))


def _shared_objective(members: list[_Planned], rows: list[slice]) -> Objective:
    """One Objective for a shared pass: every member's scalar on its own rows. Only loss explanations
    are shared, and those differ only in their scalar, positions and the logits they read."""
    first = members[0].objective
    columns = [m.objective.logit_columns for m in members]
    union = None if any(c is None for c in columns) else tuple(sorted(set().union(*columns)))
    # where each member's columns are among the shared pass's (all of them: its token ids)
    picks = [None if c is None else list(c) if union is None else [union.index(t) for t in c] for c in columns]

    def scalar(captured, logits):
        return torch.cat([m.objective.scalar({k: v[r] for k, v in captured.items()},
                                             logits[r] if pick is None else logits[r][..., pick])
                          for m, r, pick in zip(members, rows, picks)])
    return dataclasses.replace(first, scalar=scalar, positions=[p for m in members for p in m.objective.positions],
                               logit_columns=union)


@dataclasses.dataclass
class _SharedPass:
    """One forward/backward pass's node tensors for all its members' prompts (``rows[j]``: member
    ``j``'s rows of the batch)."""

    engine: Engine
    members: list[_Planned]
    rows: list[slice]
    prepared: PreparedPrompts
    logits: torch.Tensor          # [batch, vocab]
    scalars: torch.Tensor         # [batch]
    groups: list[NodeGroup]
    bias_direct: torch.Tensor     # [batch], each member's logit-difference constant included

    def node_tensors(self) -> list[NodeTensors]:
        """Each member's own slice."""
        return [NodeTensors(m.prepared, m.objective, self.logits[r], self.scalars[r], [b.rows(r) for b in self.groups],
                            self.bias_direct[r], m.loss_objective.positions) for m, r in zip(self.members, self.rows)]


def _run_shared(engine: Engine, members: list[_Planned]) -> _SharedPass:
    """One forward and one backward for every member (all can_share, same plan and width)."""
    if len(members) == 1:
        m = members[0]
        rows, objective, interventions, prepared = [slice(0, m.prepared.batch)], m.objective, m.interventions, m.prepared
    else:
        rows, interventions, start = [], [], 0
        for m in members:
            rows.append(slice(start, start + m.prepared.batch))
            interventions += [OnRows(iv, start, start + m.prepared.batch) for iv in m.interventions]
            start += m.prepared.batch
        objective = _shared_objective(members, rows)
        prepared = PreparedPrompts.concatenated([m.prepared for m in members])
    first = members[0]
    logit_positions = [p for m in members for p in m.loss_objective.positions]
    logits, scalars, acts, grad = forward_backward(engine, prepared, interventions, objective, first.mlp_plan,
                                                    first.attn_plan, first.splice_points, logit_positions)
    # members share everything node_groups reads from ``objective`` (read point, upstream and direct
    # writers), so the node values are computed once for the whole batch
    groups, bias_direct = node_groups(PassValues(engine, prepared, objective, acts, grad), first.mlp_plan,
                                      first.attn_plan)
    for m, r in zip(members, rows):
        if m.request.trace is None:
            bias_direct[r] += logit_diff_constant(engine.model, m.request.loss)
        if m.request.total_effect_softmax:
            _softmax_totals(engine, m, groups, logits[r], r)
    return _SharedPass(engine, members, rows, prepared, logits, scalars, groups, bias_direct)


def _shared_passes(engine: Engine, requests: list[AttributionRequest]
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
        key = planned.share_key() if planned.can_share else ("alone", i)
        groups.setdefault(key, []).append((i, planned))
    return errors, [([i for i, _ in members], _run_shared(engine, [m for _, m in members]))
                    for members in groups.values()]


def _per_request(engine: Engine, requests: list[AttributionRequest], results: Callable[[_SharedPass], list[T]]
                 ) -> list[T | Exception]:
    """``results`` of each shared pass (one per member), put back in the requests' order, with the
    errors of requests with bad input in their slots."""
    errors, passes = _shared_passes(engine, requests)
    out: list[T | Exception | None] = [errors.get(i) for i in range(len(requests))]
    for indices, shared in passes:
        for i, result in zip(indices, results(shared)):
            out[i] = result
    return out  # type: ignore[return-value]


def _node_tensors_many(engine: Engine, requests: list[AttributionRequest]) -> list[NodeTensors | Exception]:
    """Node tensors for several independent requests, sharing forward/backward passes where they can
    (same component choices, no trace). A request with bad input gets its error in its own slot; the
    others are unaffected. Each result equals the request's result alone up to float rounding."""
    return _per_request(engine, requests, _SharedPass.node_tensors)


def node_tensors(engine: Engine, request: AttributionRequest) -> NodeTensors:
    """One request's node values before selection (its own pass, as it would be shared)."""
    (result,) = _node_tensors_many(engine, [request])
    if isinstance(result, Exception):
        raise result
    return result


def _answers(shared: _SharedPass) -> list[dict]:
    """The answers to a pass's members as plain JSON-ready data, in :class:`AttributionResult`'s
    shape (field for field, in its field order, so that serializing it gives the model's JSON).
    Node selection, predictions and token summaries run once over the whole batch."""
    prepared, rows = shared.prepared, [range(r.start, r.stop) for r in shared.rows]
    tokens = [gpt2_tokenizer().token_strs(ids) for ids in prepared.token_ids]
    summaries = token_summaries(shared.groups, prepared, tokens)
    extra = [loss_token_ids(m.request.loss) for m, r in zip(shared.members, rows) for _ in r]
    preds = predictions(shared.logits, extra)
    tables = node_tables(shared.groups, prepared, [(r, m.request.top_k) for m, r in zip(shared.members, rows)])
    for m, nodes in zip(shared.members, tables):
        if m.request.exact_top_n and m.request.trace is None:
            add_exact_effects(shared.engine, m, nodes[:m.request.exact_top_n])
        if m.request.graddrop and m.request.trace is None:
            add_graddrop(shared.engine, m, nodes)
    scalars, bias_direct = float32_list(torch.stack([shared.scalars, shared.bias_direct]))
    answers = []
    for m, r, nodes in zip(shared.members, rows, tables):
        prompts = [{"tokens": tokens[i], "token_ids": prepared.token_ids[i], "loss": scalars[i],
                    "loss_position": m.objective.positions[j], "top_predictions": preds[i][0],
                    "bottom_predictions": preds[i][1], "target_predictions": preds[i][2],
                    "token_summaries": summaries[i], "bias_direct_effect": bias_direct[i]}
                   for j, i in enumerate(r)]
        answers.append({"explained": m.objective.description, "prompts": prompts, "nodes": nodes})
    return answers


def answers_many(engine: Engine, requests: list[AttributionRequest]) -> list[dict | Exception]:
    """The answers to several independent requests (see :func:`_node_tensors_many`) as
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


def _shared_answers(engine: Engine, requests: list[AttributionRequest]) -> list[dict | Exception]:
    return _per_request(engine, requests, _answers)


def _softmax_totals(engine: Engine, planned: _Planned, groups: list[NodeGroup], logits: torch.Tensor, rows: slice
                    ) -> None:
    """Replace the estimated total effects of ``planned``'s rows by the softmax estimate."""
    for g, estimate in zip(groups, softmax_total_effects(engine, planned, logits)):
        old = g.values["total_effect"][rows]
        g.values["total_effect"][rows] = torch.where(old.isnan(), old, estimate)


def add_exact_effects(engine: Engine, planned: _Planned, rows: list[dict]) -> None:
    """Measure the real zero-ablation effect of each node of ``rows`` (node-table rows of one request)
    in one batched pass and put it beside the estimate, as ``exact_effect`` of each value."""
    if not rows:
        return
    nodes = [AblatedNode.from_row(row) for row in rows]
    effects = exact_effects(engine, planned.prepared, planned.interventions, planned.splice_points,
                            planned.request.loss, planned.loss_objective.positions, nodes)
    for row, measured in zip(rows, float32_list(effects)):
        for values, x in zip(row["values"], measured):
            if values is not None:
                values["exact_effect"] = x


def add_graddrop(engine: Engine, planned: _Planned, rows: list[dict]) -> None:
    """Give each value of ``rows`` (one request's node table) its GradDrop score, as ``graddrop``."""
    groups = {(g.kind, g.layer, g.sae): g.values["graddrop"] for g in graddrop_scores(engine, planned)}
    spots, where = [], []
    for row in rows:
        scores = groups[(row["kind"], row["layer"], row["sae"])]
        for i, values in enumerate(row["values"]):
            if values is None:
                continue
            q = row["positions"][i]
            at = ((row["index"], q, row["key_positions"][i]) if row["kind"] == "attn_head"
                  else (q, row["index"]) if row["kind"] in ("mlp_neuron", "sae_latent") else (q,))
            spots.append(values)
            where.append(scores[(i, *at)])
    for values, x in zip(spots, float32_list(torch.stack(where)) if where else []):
        values["graddrop"] = x


def _downstream_gradient(engine: Engine, request: AttributionRequest, prepared: PreparedPrompts, interventions: list,
                         for_loss: Objective) -> torch.Tensor:
    """For tracing a head through its value: the gradient of the downstream node (or the loss) at the
    head's layer's attention output."""
    trace = request.trace
    layer = trace.node.layer
    down = trace.downstream
    if down is None:
        target = for_loss
    else:
        if down.kind not in ("mlp_neuron", "sae_latent"):
            raise RequestError("the downstream node of a value trace must be an MLP neuron or an SAE latent",
                               field="trace.downstream.kind")
        validate_node(down, engine.model, engine.saes, "trace.downstream")
        if down.layer < layer:
            raise RequestError(f"the downstream node (layer {down.layer}) is before the head (layer {layer})",
                               field="trace.downstream.layer")
        target = trace_objective(engine.model, prepared, TraceSpec(node=down, through="pre"))

    hook = f"blocks.{layer}.hook_attn_out"
    capture = Capture(leaves=set())
    with torch.enable_grad():
        def leaf(x, ctx):
            return x.detach().requires_grad_(True)
        final = engine.model(prepared.tokens, prepared.mask,
                             fwd_hooks=[("hook_embed", leaf), *target.hooks, (hook, capture),
                                        *[(c, capture) for c in target.capture]],
                             interventions=interventions, splices=engine.splices(target.splice_points),
                             logit_positions=torch.tensor(for_loss.positions), return_final=True)
        (g,) = torch.autograd.grad(target.scalar(capture.store, target.read_logits(engine.model, final)).sum(),
                                   [capture.store[hook]])
    return g.detach()
