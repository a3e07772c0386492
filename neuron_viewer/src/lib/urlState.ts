/** Every view's state lives in the URL's query string, so a copied link reproduces the view.
 * parseRoute(search) and routeToSearch(route) are inverse to each other (tested). */
import type { NodeIntervention, NodeKind, SweepKind, TraceSpec } from "../api/client";

export const METRICS = ["activation", "write_magnitude", "direct_effect", "total_effect"] as const;
export type Metric = (typeof METRICS)[number];
/** Columns the node table adds when the rows carry them (issue 23: exact_top_n, graddrop). */
export const EXTRA_COLUMNS = ["exact_effect", "graddrop"] as const;
export type ExtraColumn = (typeof EXTRA_COLUMNS)[number];
/** Any value column of the node table (a sort key). */
export type Column = Metric | ExtraColumn;
const COLUMNS: readonly string[] = [...METRICS, ...EXTRA_COLUMNS];
/** Where the estimated total effect is linearised (the request's total_effect_ln; live is the server's default). */
export type EffectLN = "live" | "frozen";
/** The most rows a request may ablate for real (the schema's bound on exact_top_n). */
export const MAX_EXACT_TOP_N = 200;
export type Side = "left" | "right" | "diff";
export type Panel = "none" | "sweep" | "graph" | "lens" | "heads" | "path" | "generate";
export const PANELS: Panel[] = ["none", "sweep", "graph", "lens", "heads", "path", "generate"];

export interface SortSpec {
  metric: Column;
  side: Side;
  desc: boolean;
  /** sort by |value| (the default: biggest effects either way first) */
  abs: boolean;
}

export interface DebuggerState {
  prompt: string;
  /** second prompt for comparison ("" = none) */
  prompt2: string;
  targets: string[];
  distractors: string[];
  /** interventions on the first prompt */
  interventions: NodeIntervention[];
  trace: TraceSpec | null;
  mlp: "neurons" | "latents";
  attention: "heads" | "latents";
  topK: number;
  sort: SortSpec;
  /** node kinds shown (empty = all) */
  kinds: NodeKind[];
  /** layer shown (null = all) */
  layer: number | null;
  /** free-text filter on the node label */
  search: string;
  panel: Panel;
  sweepKind: SweepKind;
  /** group the node table's rows by component type */
  group: boolean;
  /** the node table's metric columns (empty = the default: all four; direct and total when comparing) */
  cols: Metric[];
  /** graph budgets */
  graphNodes: number;
  graphEdges: number;
  /** path patching: sender and receiver heads as typed ("L3.H0, L3.H1"), the receivers' inputs */
  senders: string;
  receivers: string;
  pathInputs: ("q" | "k" | "v")[];
  /** steering: the node ("L3.N412", "L3.mlp.F12"), α, and the prompt positions (empty = all) */
  steer: string;
  alpha: number;
  steerPositions: number[];
  /** the estimated total effect's linearisation point (issue 23) */
  estimate: EffectLN;
  /** exact output softmax in the estimate (total_effect_softmax; log_prob losses only) */
  softmax: boolean;
  /** zero-ablate the table's first N rows for real (exact_top_n; 0 = off) */
  exactTopN: number;
  /** each row's GradDrop score */
  graddrop: boolean;
}

export interface NodeAddress {
  kind: "mlp_neuron" | "attn_head" | "sae_latent";
  layer: number;
  index: number;
  sae: string | null;
}

export type Route =
  | { view: "debugger"; state: DebuggerState }
  | { view: "node"; node: NodeAddress; state: DebuggerState }
  | { view: "bad-node"; message: string; state: DebuggerState }
  | { view: "synthetic"; rows: number; state: DebuggerState };

export const DEFAULT_STATE: DebuggerState = {
  prompt: "",
  prompt2: "",
  targets: [],
  distractors: [],
  interventions: [],
  trace: null,
  mlp: "neurons",
  attention: "heads",
  topK: 20,
  sort: { metric: "total_effect", side: "left", desc: true, abs: true },
  kinds: [],
  layer: null,
  search: "",
  panel: "none",
  sweepKind: "heads",
  group: false,
  cols: [],
  graphNodes: 24,
  graphEdges: 60,
  senders: "",
  receivers: "",
  pathInputs: ["q", "k", "v"],
  steer: "",
  alpha: 10,
  steerPositions: [],
  estimate: "live",
  softmax: false,
  exactTopN: 0,
  graddrop: false,
};

const SWEEP_KINDS: SweepKind[] = ["heads", "heads_by_position", "resid_pre", "attn_out", "mlp_out"];
const NODE_KINDS: NodeKind[] = ["embedding", "pos_embedding", "attn_head", "mlp_neuron", "sae_latent", "sae_error"];
const PAGE_KINDS: NodeAddress["kind"][] = ["mlp_neuron", "attn_head", "sae_latent"];

function intOr<T>(value: string | null, fallback: T): number | T {
  if (value === null || value.trim() === "") return fallback;
  const n = Number(value);
  return Number.isInteger(n) ? n : fallback;
}

function jsonOr<T>(value: string | null, fallback: T): T {
  if (!value) return fallback;
  try {
    return JSON.parse(value) as T;
  } catch {
    return fallback;
  }
}

function parseSort(value: string | null): SortSpec {
  if (!value) return DEFAULT_STATE.sort;
  const [metric, side, dir, abs] = value.split(".");
  return {
    metric: COLUMNS.includes(metric) ? (metric as Column) : DEFAULT_STATE.sort.metric,
    side: side === "right" || side === "diff" ? side : "left",
    desc: dir !== "asc",
    abs: abs !== "signed",
  };
}

export function parseState(params: URLSearchParams): DebuggerState {
  const sweep = params.get("sweep") as SweepKind | null;
  const panel = params.get("panel");
  return {
    prompt: params.get("prompt") ?? "",
    prompt2: params.get("prompt2") ?? "",
    targets: params.getAll("target"),
    distractors: params.getAll("distractor"),
    interventions: jsonOr<NodeIntervention[]>(params.get("iv"), []),
    trace: jsonOr<TraceSpec | null>(params.get("trace"), null),
    mlp: params.get("mlp") === "latents" ? "latents" : "neurons",
    attention: params.get("attn") === "latents" ? "latents" : "heads",
    topK: Math.max(1, intOr(params.get("k"), DEFAULT_STATE.topK)),
    sort: parseSort(params.get("sort")),
    kinds: (params.get("kinds") ?? "").split(",").filter((k): k is NodeKind => NODE_KINDS.includes(k as NodeKind)),
    layer: intOr(params.get("flayer"), null),
    search: params.get("q") ?? "",
    panel: PANELS.includes(panel as Panel) ? (panel as Panel) : "none",
    sweepKind: sweep && SWEEP_KINDS.includes(sweep) ? sweep : "heads",
    group: params.get("group") === "kind",
    cols: (params.get("cols") ?? "").split(",").filter((c): c is Metric => (METRICS as readonly string[]).includes(c)),
    graphNodes: Math.min(200, Math.max(1, intOr(params.get("gn"), DEFAULT_STATE.graphNodes))),
    graphEdges: Math.min(1000, Math.max(1, intOr(params.get("ge"), DEFAULT_STATE.graphEdges))),
    senders: params.get("snd") ?? "",
    receivers: params.get("rcv") ?? "",
    pathInputs: params.has("pin")
      ? (["q", "k", "v"] as const).filter((x) => (params.get("pin") ?? "").split(",").includes(x)) : DEFAULT_STATE.pathInputs,
    steer: params.get("steer") ?? "",
    alpha: Number.isFinite(Number(params.get("alpha"))) && params.get("alpha") !== null && params.get("alpha") !== ""
      ? Number(params.get("alpha")) : DEFAULT_STATE.alpha,
    steerPositions: (params.get("spos") ?? "").split(",").filter((x) => /^\d+$/.test(x)).map(Number),
    estimate: params.get("ln") === "frozen" ? "frozen" : "live",
    softmax: params.get("softmax") === "1",
    exactTopN: Math.min(MAX_EXACT_TOP_N, Math.max(0, intOr(params.get("exact"), 0))),
    graddrop: params.get("graddrop") === "1",
  };
}

export function stateToParams(state: DebuggerState, params = new URLSearchParams()): URLSearchParams {
  const d = DEFAULT_STATE;
  if (state.prompt) params.set("prompt", state.prompt);
  if (state.prompt2) params.set("prompt2", state.prompt2);
  state.targets.forEach((t) => params.append("target", t));
  state.distractors.forEach((t) => params.append("distractor", t));
  if (state.interventions.length) params.set("iv", JSON.stringify(state.interventions));
  if (state.trace) params.set("trace", JSON.stringify(state.trace));
  if (state.mlp !== d.mlp) params.set("mlp", state.mlp);
  if (state.attention !== d.attention) params.set("attn", state.attention);
  if (state.topK !== d.topK) params.set("k", String(state.topK));
  const s = state.sort;
  if (s.metric !== d.sort.metric || s.side !== d.sort.side || s.desc !== d.sort.desc || s.abs !== d.sort.abs)
    params.set("sort", `${s.metric}.${s.side}.${s.desc ? "desc" : "asc"}.${s.abs ? "abs" : "signed"}`);
  if (state.kinds.length) params.set("kinds", state.kinds.join(","));
  if (state.layer !== null) params.set("flayer", String(state.layer));
  if (state.search) params.set("q", state.search);
  if (state.panel !== "none") params.set("panel", state.panel);
  if (state.sweepKind !== d.sweepKind) params.set("sweep", state.sweepKind);
  if (state.group) params.set("group", "kind");
  if (state.cols.length) params.set("cols", state.cols.join(","));
  if (state.graphNodes !== d.graphNodes) params.set("gn", String(state.graphNodes));
  if (state.graphEdges !== d.graphEdges) params.set("ge", String(state.graphEdges));
  if (state.senders) params.set("snd", state.senders);
  if (state.receivers) params.set("rcv", state.receivers);
  if (state.pathInputs.join(",") !== d.pathInputs.join(",")) params.set("pin", state.pathInputs.join(","));
  if (state.steer) params.set("steer", state.steer);
  if (state.alpha !== d.alpha) params.set("alpha", String(state.alpha));
  if (state.steerPositions.length) params.set("spos", state.steerPositions.join(","));
  if (state.estimate !== d.estimate) params.set("ln", state.estimate);
  if (state.softmax) params.set("softmax", "1");
  if (state.exactTopN !== d.exactTopN) params.set("exact", String(state.exactTopN));
  if (state.graddrop) params.set("graddrop", "1");
  return params;
}

export function parseRoute(search: string): Route {
  const params = new URLSearchParams(search);
  const state = parseState(params);
  const view = params.get("view");
  if (view === "node") {
    const kind = params.get("kind") ?? "";
    if (!PAGE_KINDS.includes(kind as NodeAddress["kind"]))
      return { view: "bad-node", state,
        message: `unknown node kind ${JSON.stringify(kind)}: a node page is for ${PAGE_KINDS.join(", ")}` };
    for (const field of ["layer", "index"]) {
      const raw = params.get(field);
      const n = Number(raw);
      if (raw === null || raw.trim() === "" || !Number.isInteger(n) || n < 0)
        return { view: "bad-node", state,
          message: `${field} must be a whole number ≥ 0${raw === null ? " (it is missing)" : `, not ${JSON.stringify(raw)}`}` };
    }
    if (kind === "sae_latent" && !params.get("sae"))
      return { view: "bad-node", state, message: "an sae_latent page needs sae (the SAE's hook point)" };
    return {
      view: "node",
      node: {
        kind: kind as NodeAddress["kind"],
        layer: Number(params.get("layer")),
        index: Number(params.get("index")),
        sae: params.get("sae"),
      },
      state,
    };
  }
  if (view === "synthetic") return { view: "synthetic", rows: Math.max(1, intOr(params.get("rows"), 10000)), state };
  return { view: "debugger", state };
}

export function routeToSearch(route: Route): string {
  const params = new URLSearchParams();
  if (route.view === "node") {
    params.set("view", "node");
    params.set("kind", route.node.kind);
    params.set("layer", String(route.node.layer));
    params.set("index", String(route.node.index));
    if (route.node.sae) params.set("sae", route.node.sae);
  } else if (route.view === "synthetic") {
    params.set("view", "synthetic");
    params.set("rows", String(route.rows));
  }
  stateToParams(route.state, params);
  const text = params.toString();
  return text ? `?${text}` : "";
}
