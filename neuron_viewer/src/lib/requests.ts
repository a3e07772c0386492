/** Building API requests from the URL state (pure functions, tested). */
import type { AttributionRequest, NodeIntervention, NodeRow, TraceSpec } from "../api/client";
import { nodeRef, sameNode } from "./nodes";
import type { DebuggerState, EffectLN } from "./urlState";

export function lossSpec(state: DebuggerState): AttributionRequest["loss"] {
  return { kind: "logit_diff", targets: state.targets, distractors: state.distractors };
}

export function attributionRequest(state: DebuggerState, overrides: Partial<AttributionRequest> = {}): AttributionRequest {
  const prompts: AttributionRequest["prompts"] = [{ text: state.prompt, interventions: state.interventions }];
  if (state.prompt2) prompts.push({ text: state.prompt2, interventions: [] });
  const loss = lossSpec(state);
  return {
    prompts,
    loss,
    mlp: state.mlp,
    attention: state.attention,
    trace: state.trace,
    top_k: state.topK,
    ...estimateFields(state, loss),
    ...overrides,
  };
}

/** The estimate options of a state (issue 23) that apply to it. */
export type EstimateOptions = Pick<DebuggerState, "estimate" | "softmax" | "exactTopN" | "graddrop">;

/** Does the server take total_effect_softmax for this loss? Only a log_prob loss explaining the loss
 * itself (a logit difference is linear in the logits; a trace has no output softmax). */
export function softmaxApplies(loss: AttributionRequest["loss"], trace: DebuggerState["trace"]): boolean {
  return loss.kind === "log_prob" && !trace;
}

/** exact_top_n and graddrop measure effects on the loss: the server refuses them with a trace. */
export function measuresApply(trace: DebuggerState["trace"]): boolean {
  return !trace;
}

/** The request fields of the estimate options, each only when it differs from the server's default
 * and applies to the request (see softmaxApplies, measuresApply). */
export function estimateFields(state: EstimateOptions & Pick<DebuggerState, "trace">, loss: AttributionRequest["loss"]
): Partial<AttributionRequest> {
  const fields: Partial<AttributionRequest> = {};
  if (state.estimate !== "live") fields.total_effect_ln = state.estimate;
  if (state.softmax && softmaxApplies(loss, state.trace)) fields.total_effect_softmax = true;
  if (measuresApply(state.trace)) {
    if (state.exactTopN > 0) fields.exact_top_n = state.exactTopN;
    if (state.graddrop) fields.graddrop = true;
  }
  return fields;
}

/** The linearisation the "total" column of a result shows: the requested one, except that a trace
 * always reads the frozen-scale gradient (the server ignores total_effect_ln there). */
export type ShownEstimate = EffectLN | "trace";

export function shownEstimate(state: Pick<DebuggerState, "estimate" | "trace">): ShownEstimate {
  return state.trace ? "trace" : state.estimate;
}

/** What a head row's action acts on: the whole head at the query token (key_position null: zero,
 * mean, resample and patch all work) or the one (query, key) pair (the engine only zeroes a pair). */
export type HeadScope = "head" | "pair";

/** The modes the engine accepts for a scope (see activation_server/node_interventions.py). */
export function modesFor(scope: HeadScope | null): NodeIntervention["mode"][] {
  return scope === "pair" ? ["zero"] : ["zero", "mean", "resample", "patch"];
}

/** The state after adding an intervention on a row's node in the first prompt (replacing any
 * earlier intervention on the same node). For a head row, `scope` "head" (the default) acts on
 * the head's whole output at the query token, "pair" on the row's (query, key) pair. */
export function withIntervention(state: DebuggerState, row: NodeRow, mode: NodeIntervention["mode"],
                                 scope: HeadScope = "head"): DebuggerState {
  const pair = nodeRef(row, 0);
  if (!pair) return state;
  const node = row.kind === "attn_head" && scope === "head" ? { ...pair, key_position: null } : pair;
  if (!modesFor(row.kind === "attn_head" ? scope : null).includes(mode)) return state;
  const iv: NodeIntervention = mode === "patch" ? { node, mode, source_prompt: 1 } : { node, mode };
  return { ...state, interventions: [...state.interventions.filter((x) => !sameNode(x.node, node)), iv] };
}

/** The state after tracing a row's node upstream. A value trace (through v) sends the head's write
 * to the node being traced now, or to the loss when nothing is traced. */
export function withTrace(state: DebuggerState, row: NodeRow, through: TraceSpec["through"]): DebuggerState {
  const node = nodeRef(row, 0);
  if (!node) return state;
  const downstream = through === "v" && state.trace ? state.trace.node : null;
  return { ...state, trace: { node, through, downstream } };
}

export function swapTargets(state: DebuggerState): DebuggerState {
  return { ...state, targets: state.distractors, distractors: state.targets };
}
