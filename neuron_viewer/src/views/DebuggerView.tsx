/** The debugger: prompt form, loss with interventions, predictions, token strip, node table and
 * the sweep / graph panels. Its whole state is the URL's (see lib/urlState.ts). */
import { useEffect, useMemo, useRef, useState } from "react";
import { unwrap, type AttributionResult, type NodeRow, type ServerInfo } from "../api/client";
import { NodeTable, type NodeAction } from "../components/NodeTable";
import { Predictions } from "../components/Predictions";
import { TokenStrip } from "../components/TokenStrip";
import { formatNumber } from "../lib/color";
import { TIPS } from "../lib/glossary";
import { componentLabel, describeNode, describeTrace } from "../lib/nodes";
import { attributionRequest, shownEstimate, withIntervention, withTrace } from "../lib/requests";
import { useClient, useLoad } from "../lib/useApi";
import { Status } from "../components/Status";
import type { DebuggerState, NodeAddress } from "../lib/urlState";
import { PANELS, type Panel } from "../lib/urlState";
import { PromptForm } from "./PromptForm";
import { GuidedMenu } from "./GuidedMenu";
import { LensPanel } from "./LensPanel";
import { HeadGridPanel } from "./HeadGridPanel";
import { PathPatchingPanel } from "./PathPatchingPanel";
import { GeneratePanel } from "./GeneratePanel";

const PANEL_NAMES: Record<Panel, string> = {
  none: "node table", sweep: "patching sweep", graph: "circuit graph", lens: "logit lens", heads: "head grid",
  path: "path patching", generate: "generate & steer",
};
const PANEL_TIPS: Record<Panel, string> = {
  none: TIPS.run, sweep: "Activation patching from the prompt (clean) into the second prompt (corrupted), per component.",
  graph: "The attribution graph: the top nodes and the weighted edges between them.", lens: TIPS.lens, heads: TIPS.headGrid,
  path: TIPS.pathPatching, generate: TIPS.generate,
};
import { GraphPanel } from "./GraphPanel";
import { SweepPanel } from "./SweepPanel";
import { ExplanationSearch } from "../components/ExplanationSearch";

export interface DebuggerViewProps {
  state: DebuggerState;
  info: ServerInfo | null;
  navigate: (state: DebuggerState) => void;
  openNode: (node: NodeAddress) => void;
}

function LossPanel({ state, resultState, result, navigate }: {
  state: DebuggerState; resultState: DebuggerState; result: AttributionResult; navigate: DebuggerViewProps["navigate"];
}) {
  const client = useClient();
  const tokens = result.prompts[0].tokens;
  // the same request without interventions (the trace, if any, kept): the value before the changes;
  // nothing measured beside the estimate (the loss is all it reads)
  const baselineReq = useMemo(() => attributionRequest({ ...resultState, interventions: [], exactTopN: 0, graddrop: false, softmax: false },
    { top_k: 1 }), [resultState]);
  const baseline = useLoad(resultState.interventions.length ? JSON.stringify(baselineReq) : null,
    () => unwrap(client.POST("/api/v1/attribution", { body: baselineReq })));
  // the loss before / after each change, in the order the changes were made in this tab
  const history = useRef<{ label: string; loss: number }[]>([]);
  const [, redraw] = useState(0);
  const loss = result.prompts[0].loss;
  useEffect(() => {
    const ivs = resultState.interventions;
    const label = (ivs.length ? ivs.map((iv) => `${iv.mode} ${describeNode(iv.node)}`).join(", ") : "no interventions") +
      (resultState.trace ? ` (tracing ${describeTrace(resultState.trace)})` : "");
    const last = history.current[history.current.length - 1];
    if (!last || last.label !== label || last.loss !== loss) {
      history.current = [...history.current.slice(-9), { label, loss }];
      redraw((x) => x + 1);
    }
  }, [loss, resultState]);
  const before = baseline.status === "ok" ? baseline.data.prompts[0].loss : null;
  return (
    <section className="loss-panel" aria-label="loss">
      <div>
        <span className="field-label" title={TIPS.loss}>{state.trace ? "traced value" : "loss"}</span>{" "}
        <span className="loss-value mono" data-testid="loss">{formatNumber(loss, 4)}</span>
        {result.prompts[1] && <span className="muted mono"> second prompt: {formatNumber(result.prompts[1].loss, 4)}</span>}
        {resultState.interventions.length > 0 && (
          <span className="mono" data-testid="loss-before">
            {" "}(without interventions: {before === null ? "…" : formatNumber(before, 4)}
            {before !== null && `, Δ ${formatNumber(loss - before, 4)}`})
          </span>
        )}
      </div>
      <div className="muted">{result.explained}</div>
      {state.trace && (
        <div className="trace-banner" data-testid="trace-banner">
          tracing <span className="mono">{describeTrace(state.trace, tokens)}</span>{" "}
          <button onClick={() => navigate({ ...state, trace: null })}>back to the loss</button>
        </div>
      )}
      {history.current.length > 1 && (
        <details className="history">
          <summary>loss history ({history.current.length})</summary>
          <ol className="mono">
            {history.current.map((h, i) => <li key={i}>{formatNumber(h.loss, 4)} — {h.label}</li>)}
          </ol>
        </details>
      )}
    </section>
  );
}

/** The active interventions, each removable: shown whatever the state of the request (a failing
 * intervention, e.g. from a shared link, must stay visible and removable). */
export function InterventionList({ state, navigate, tokens }: {
  state: DebuggerState; navigate: DebuggerViewProps["navigate"]; tokens?: string[];
}) {
  if (state.interventions.length === 0) return null;
  return (
    <section className="interventions-box" aria-label="interventions">
      <span className="field-label" title={`${TIPS.ablateZero} ${TIPS.patch}`}>interventions</span>
      <ul className="interventions" aria-label="active interventions">
        {state.interventions.map((iv, i) => (
          <li key={i} className="mono">
            {iv.mode}{iv.mode === "patch" ? " from prompt 2" : ""} {describeNode(iv.node, tokens)}
            <span className="muted"> {iv.node.kind === "attn_head" ? (iv.node.key_position === null || iv.node.key_position === undefined ? "(whole head at the query)" : "(one query–key pair)") : ""}</span>{" "}
            <button aria-label={`remove intervention ${i}`}
              onClick={() => navigate({ ...state, interventions: state.interventions.filter((_, j) => j !== i) })}>remove</button>
          </li>
        ))}
        <li><button onClick={() => navigate({ ...state, interventions: [] })}>remove all</button></li>
      </ul>
    </section>
  );
}

/** `resultState` is the state whose request produced `result` (the current `state` may be newer). */
export function ResultView({ state, resultState = state, info, result, navigate, openNode, hideInterventions = false }: DebuggerViewProps & {
  result: AttributionResult; resultState?: DebuggerState; hideInterventions?: boolean;
}) {
  const comparing = result.prompts.length > 1;
  const onAction = (row: NodeRow, action: NodeAction) => {
    if (action.type === "ablate") navigate(withIntervention(state, row, action.mode, action.scope ?? "head"));
    else if (action.type === "patch") navigate(withIntervention(state, row, "patch"));
    else if (action.type === "trace") navigate(withTrace(state, row, action.through));
    else if (action.type === "steer")
      navigate({ ...state, panel: "generate", steer: componentLabel(row), steerPositions: row.positions[0] === null || row.positions[0] === undefined ? [] : [row.positions[0]] });
    else if (row.kind === "mlp_neuron" || row.kind === "attn_head" || row.kind === "sae_latent")
      openNode({ kind: row.kind, layer: row.layer ?? 0, index: row.index, sae: row.sae ?? null });
  };
  const layers = info?.model.n_layer ?? Math.max(0, ...result.nodes.map((n) => (n.layer ?? -1) + 1));
  return (
    <>
      <LossPanel state={state} resultState={resultState} result={result} navigate={navigate} />
      {!hideInterventions && <InterventionList state={state} navigate={navigate} tokens={result.prompts[0].tokens} />}
      <div className="result-grid">
        <div className="predictions-col">
          {result.prompts.map((p, i) => <Predictions key={i} result={p} title={i === 0 ? "prompt" : "second prompt"} />)}
        </div>
        <div className="table-col">
          <TokenStrip summaries={result.prompts[0].token_summaries} />
          <NodeTable rows={result.nodes} tokens={result.prompts[0].tokens} comparing={comparing} view={state} layers={layers}
            onSort={(sort) => navigate({ ...state, sort })}
            onFilter={(f) => navigate({ ...state, ...f })}
            onAction={onAction} topK={resultState.topK} estimate={shownEstimate(resultState)} />
        </div>
      </div>
    </>
  );
}

export function DebuggerView(props: DebuggerViewProps) {
  const { state, info, navigate } = props;
  const client = useClient();
  const request = useMemo(() => attributionRequest(state), [state]);
  const ready = state.prompt !== "";
  const result = useLoad(ready ? JSON.stringify(request) : null,
    () => unwrap(client.POST("/api/v1/attribution", { body: request })));
  // keep the last result on screen while the next one computes
  const [shown, setShown] = useState<{ result: AttributionResult; state: DebuggerState } | null>(null);
  useEffect(() => {
    if (result.status === "ok") setShown({ result: result.data, state });
    if (result.status === "idle") setShown(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [result]);
  return (
    <div className="debugger">
      <GuidedMenu state={state} navigate={navigate} />
      <PromptForm state={state} info={info} onRun={navigate} />
      <ExplanationSearch openNode={props.openNode} />
      <nav className="tabs">
        {PANELS.map((p) => (
          <button key={p} className={state.panel === p ? "active" : ""} title={PANEL_TIPS[p]} onClick={() => navigate({ ...state, panel: p })}>
            {PANEL_NAMES[p]}
          </button>
        ))}
      </nav>
      {state.panel === "sweep" && <SweepPanel state={state} navigate={navigate} />}
      {state.panel === "graph" && <GraphPanel state={state} navigate={navigate} openNode={props.openNode} />}
      {state.panel === "lens" && <LensPanel state={state} />}
      {state.panel === "heads" && <HeadGridPanel state={state} info={info} navigate={navigate} />}
      {state.panel === "path" && <PathPatchingPanel state={state} info={info} navigate={navigate} />}
      {state.panel === "generate" && <GeneratePanel state={state} info={info} navigate={navigate} />}
      {!ready && <p className="muted">Type a prompt, a target and a distractor, then Run — or pick a guided investigation above.</p>}
      <InterventionList state={state} navigate={navigate} tokens={shown?.result.prompts[0].tokens} />
      <Status load={result} what="attribution" />
      {shown && (
        <div className={result.status === "loading" ? "stale" : ""}>
          <ResultView {...props} resultState={shown.state} result={shown.result} hideInterventions />
        </div>
      )}
    </div>
  );
}
