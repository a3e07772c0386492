/** Every view's state lives in the URL's query string, so a copied link reproduces the view.
 * parseRoute(search) and routeToSearch(route) are inverse to each other (tested). */
import type { NodeIntervention, NodeKind, SweepKind, TraceSpec } from "../api/client";

export const METRICS = ["activation", "write_magnitude", "direct_effect", "total_effect"] as const;
export type Metric = (typeof METRICS)[number];
export type Side = "left" | "right" | "diff";
export type Panel = "none" | "sweep" | "graph";

export interface SortSpec {
  metric: Metric;
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
    metric: (METRICS as readonly string[]).includes(metric) ? (metric as Metric) : DEFAULT_STATE.sort.metric,
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
    panel: panel === "sweep" || panel === "graph" ? panel : "none",
    sweepKind: sweep && SWEEP_KINDS.includes(sweep) ? sweep : "heads",
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
  return params;
}

export function parseRoute(search: string): Route {
  const params = new URLSearchParams(search);
  const state = parseState(params);
  const view = params.get("view");
  if (view === "node") {
    const kind = params.get("kind") as NodeAddress["kind"];
    return {
      view: "node",
      node: {
        kind: PAGE_KINDS.includes(kind) ? kind : "mlp_neuron",
        layer: Math.max(0, intOr(params.get("layer"), 0)),
        index: Math.max(0, intOr(params.get("index"), 0)),
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
