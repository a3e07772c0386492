/** The node table's model: labels, values per side (left / right / diff), filtering and sorting. */
import type { NodeKind, NodeRef, NodeRow, TraceSpec } from "../api/client";
import type { Column, DebuggerState, Side, SortSpec } from "./urlState";

export const KIND_LABELS: Record<NodeKind, string> = {
  embedding: "token emb",
  pos_embedding: "pos emb",
  attn_head: "head",
  mlp_neuron: "neuron",
  sae_latent: "latent",
  sae_error: "SAE error",
};

/** The short name of an SAE's site from its hook point: "blocks.3.hook_mlp_out" → "mlp",
 * "blocks.3.hook_attn_out" → "attn", "blocks.3.mlp.hook_post" → "mlp_post", else the hook's name
 * without "hook_" (so latents of two SAEs in one layer never share a label). */
export function saeSite(sae: string | null | undefined): string {
  if (!sae) return "sae";
  const tail = sae.replace(/^blocks\.\d+\./, "");
  if (tail === "hook_mlp_out") return "mlp";
  if (tail === "hook_attn_out") return "attn";
  if (tail === "mlp.hook_post") return "mlp_post";
  return tail.replace(/hook_/g, "").replace(/\./g, "_") || "sae";
}

/** A short label: "L1.H3", "L0.N42", "L3.mlp.F468", "L3.attn.err", "tok emb". */
export function componentLabel(row: Pick<NodeRow, "kind" | "layer" | "index" | "sae">): string {
  switch (row.kind) {
    case "attn_head":
      return `L${row.layer}.H${row.index}`;
    case "mlp_neuron":
      return `L${row.layer}.N${row.index}`;
    case "sae_latent":
      return `L${row.layer}.${saeSite(row.sae)}.F${row.index}`;
    case "sae_error":
      return `L${row.layer}.${saeSite(row.sae)}.err`;
    default:
      return KIND_LABELS[row.kind];
  }
}

export function positionLabel(row: NodeRow, prompt: number, tokens?: string[]): string {
  const q = row.positions[prompt];
  if (q === null || q === undefined) return "–";
  const show = (p: number) => (tokens ? `${p} ${JSON.stringify(tokens[p] ?? "")}` : String(p));
  const k = row.key_positions?.[prompt];
  return k === null || k === undefined ? show(q) : `${show(q)} ← ${show(k)}`;
}

/** The node of a table row on one prompt (for interventions and traces). */
export function nodeRef(row: NodeRow, prompt = 0): NodeRef | null {
  const position = row.positions[prompt];
  if (position === null || position === undefined) return null;
  const key = row.key_positions?.[prompt];
  return {
    kind: row.kind,
    layer: row.layer ?? null,
    index: row.index,
    position,
    key_position: key ?? null,
    sae: row.sae ?? null,
  };
}

export function sameNode(a: NodeRef, b: NodeRef): boolean {
  return a.kind === b.kind && (a.layer ?? null) === (b.layer ?? null) && (a.index ?? 0) === (b.index ?? 0) &&
    a.position === b.position && (a.key_position ?? null) === (b.key_position ?? null) && (a.sae ?? null) === (b.sae ?? null);
}

export function describeNode(node: NodeRef, tokens?: string[]): string {
  const base = componentLabel({ kind: node.kind, layer: node.layer ?? null, index: node.index ?? 0, sae: node.sae });
  const tok = (p: number) => {
    const i = p < 0 && tokens ? tokens.length + p : p;
    return tokens && tokens[i] !== undefined ? `${p} ${JSON.stringify(tokens[i])}` : String(p);
  };
  const at = node.key_position === null || node.key_position === undefined
    ? `@${tok(node.position)}` : `@${tok(node.position)}←${tok(node.key_position)}`;
  return `${base} ${at}`;
}

export function describeTrace(trace: TraceSpec, tokens?: string[]): string {
  const down = trace.downstream ? ` → ${describeNode(trace.downstream, tokens)}` : "";
  return `${describeNode(trace.node, tokens)} via ${trace.through ?? "pre"}${down}`;
}

/** A row's value in one column on one side (null where the node is absent or the column was not computed for it). */
export function value(row: NodeRow, metric: Column, side: Side): number | null {
  const left = row.values[0]?.[metric] ?? null;
  if (side === "left") return left;
  const right = row.values[1]?.[metric] ?? null;
  if (side === "right") return right;
  return left === null || right === null ? null : right - left;
}

export interface TableFilter {
  kinds: NodeKind[];
  layer: number | null;
  search: string;
}

export function filterRows(rows: NodeRow[], filter: TableFilter): NodeRow[] {
  const needle = filter.search.trim().toLowerCase();
  return rows.filter((row) =>
    (filter.kinds.length === 0 || filter.kinds.includes(row.kind)) &&
    (filter.layer === null || row.layer === filter.layer) &&
    (needle === "" || `${componentLabel(row)} ${KIND_LABELS[row.kind]} ${row.key}`.toLowerCase().includes(needle)));
}

/** Rows sorted by one column; missing values last whatever the direction. */
export function sortRows(rows: NodeRow[], sort: SortSpec): NodeRow[] {
  const keyed = rows.map((row) => {
    const v = value(row, sort.metric, sort.side);
    return { row, v: v === null ? null : sort.abs ? Math.abs(v) : v };
  });
  const sign = sort.desc ? -1 : 1;
  keyed.sort((a, b) => {
    if (a.v === null) return b.v === null ? 0 : 1;
    if (b.v === null) return -1;
    return sign * (a.v - b.v);
  });
  return keyed.map((k) => k.row);
}

/** The order of component types when the table is grouped: heads, neurons and latents first, so
 * that large embedding effects do not bury them. */
export const GROUP_ORDER: NodeKind[] = ["attn_head", "mlp_neuron", "sae_latent", "sae_error", "embedding", "pos_embedding"];

/** Rows stably regrouped by component type (each group keeps its sorted order): one pass. */
export function groupRows(rows: NodeRow[]): NodeRow[] {
  const buckets = new Map<NodeKind, NodeRow[]>(GROUP_ORDER.map((k) => [k, []]));
  for (const row of rows) buckets.get(row.kind)!.push(row);
  return GROUP_ORDER.flatMap((k) => buckets.get(k)!);
}

export function tableRows(rows: NodeRow[], state: Pick<DebuggerState, "kinds" | "layer" | "search" | "sort"> & { group?: boolean }): NodeRow[] {
  const sorted = sortRows(filterRows(rows, state), state.sort);
  return state.group ? groupRows(sorted) : sorted;
}

/** Why a top-k request returns the rows it does: each metric column's k largest (and, except the
 * write magnitude, k smallest) nodes on each prompt, merged (a node in several lists is one row). */
export function topKExplanation(k: number, prompts: number, rows: number): string {
  const most = 7 * k * prompts;
  return `top-k ${k} → ${rows} rows: on ${prompts === 1 ? "the prompt" : `each of the ${prompts} prompts`}, the ${k} largest and ${k} smallest ` +
    `nodes by act, direct and total, and the ${k} largest by write, merged (at most 7 × ${k}${prompts > 1 ? ` × ${prompts}` : ""} = ${most}; ` +
    "a node in several lists is one row)";
}

/** The largest |value| of a column (for colour scaling). */
export function columnScale(rows: NodeRow[], metric: Column, side: Side): number {
  let best = 0;
  for (const row of rows) {
    const v = value(row, metric, side);
    if (v !== null && Math.abs(v) > best) best = Math.abs(v);
  }
  return best;
}
