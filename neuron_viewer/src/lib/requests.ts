/** Building API requests from the URL state (pure functions, tested). */
import type { AttributionRequest, NodeIntervention, NodeRow, TraceSpec } from "../api/client";
import { nodeRef, sameNode } from "./nodes";
import type { DebuggerState } from "./urlState";

export function lossSpec(state: DebuggerState): AttributionRequest["loss"] {
  return { kind: "logit_diff", targets: state.targets, distractors: state.distractors };
}

export function attributionRequest(state: DebuggerState, overrides: Partial<AttributionRequest> = {}): AttributionRequest {
  const prompts: AttributionRequest["prompts"] = [{ text: state.prompt, interventions: state.interventions }];
  if (state.prompt2) prompts.push({ text: state.prompt2, interventions: [] });
  return {
    prompts,
    loss: lossSpec(state),
    mlp: state.mlp,
    attention: state.attention,
    trace: state.trace,
    top_k: state.topK,
    ...overrides,
  };
}

/** The state after adding an intervention on a row's node in the first prompt (replacing any
 * earlier intervention on the same node). */
export function withIntervention(state: DebuggerState, row: NodeRow, mode: NodeIntervention["mode"]): DebuggerState {
  const node = nodeRef(row, 0);
  if (!node) return state;
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
