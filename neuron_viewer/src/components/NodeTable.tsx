/** The node table: every node's activation, write magnitude, direct and estimated total effect
 * (left / right / diff when comparing two prompts), sortable, filterable, colour-scaled, virtualized. */
import { memo, useMemo } from "react";
import type { NodeKind, NodeRow } from "../api/client";
import { divergingColor, formatNumber } from "../lib/color";
import { columnScale, componentLabel, KIND_LABELS, positionLabel, tableRows, value } from "../lib/nodes";
import { METRICS, type DebuggerState, type Metric, type Side, type SortSpec } from "../lib/urlState";
import { VirtualRows } from "./VirtualRows";

export const METRIC_LABELS: Record<Metric, string> = {
  activation: "act",
  write_magnitude: "write",
  direct_effect: "direct",
  total_effect: "total",
};

/** Which estimate the "total" column shows (the server's default total_effect_ln, README: Glossary). */
export const TOTAL_EFFECT_NOTE =
  " — estimated total effect linearised at the live final LayerNorm (the true gradient, attribution patching):" +
  " it ranks nodes the way ablating them does, better than the frozen-scale estimate (scripts/eval_attribution.py)";

export type NodeAction =
  | { type: "ablate"; mode: "zero" | "mean" | "resample" }
  | { type: "patch" }
  | { type: "trace"; through: "pre" | "q" | "k" | "qk" | "v" }
  | { type: "page" };

export interface NodeTableProps {
  rows: NodeRow[];
  tokens: string[];
  comparing: boolean;
  view: Pick<DebuggerState, "kinds" | "layer" | "search" | "sort">;
  onSort: (sort: SortSpec) => void;
  onFilter: (filter: { kinds?: NodeKind[]; layer?: number | null; search?: string }) => void;
  onAction?: (row: NodeRow, action: NodeAction) => void;
  layers: number;
  height?: number;
}

const ROW_HEIGHT = 24;

function sides(comparing: boolean): Side[] {
  return comparing ? ["left", "right", "diff"] : ["left"];
}

function Actions({ row, comparing, onAction }: { row: NodeRow; comparing: boolean; onAction: NodeTableProps["onAction"] }) {
  if (!onAction) return null;
  const act = (a: NodeAction) => () => onAction(row, a);
  const paged = row.kind === "mlp_neuron" || row.kind === "attn_head" || row.kind === "sae_latent";
  return (
    <span className="actions">
      <button title="zero-ablate this node" onClick={act({ type: "ablate", mode: "zero" })}>0</button>
      <button title="mean-ablate this node" onClick={act({ type: "ablate", mode: "mean" })}>μ</button>
      <button title="resample-ablate this node" onClick={act({ type: "ablate", mode: "resample" })}>rs</button>
      {comparing && <button title="patch this node from the second prompt" onClick={act({ type: "patch" })}>patch</button>}
      {row.kind === "attn_head" ? (
        <>
          <button title="trace the attention logit through the query" onClick={act({ type: "trace", through: "q" })}>q</button>
          <button title="trace the attention logit through the key" onClick={act({ type: "trace", through: "k" })}>k</button>
          <button title="trace the attention logit through query and key" onClick={act({ type: "trace", through: "qk" })}>qk</button>
          <button title="trace the write through the value (to the downstream node or the loss)" onClick={act({ type: "trace", through: "v" })}>v</button>
        </>
      ) : row.kind === "mlp_neuron" || row.kind === "sae_latent" ? (
        <button title="trace this node's pre-activation upstream" onClick={act({ type: "trace", through: "pre" })}>trace</button>
      ) : null}
      {paged && <button title="open the node page" onClick={act({ type: "page" })}>page</button>}
    </span>
  );
}

const Row = memo(function Row({ row, index, tokens, comparing, scales, onAction }: {
  row: NodeRow; index: number; tokens: string[]; comparing: boolean; scales: Map<string, number>;
  onAction: NodeTableProps["onAction"];
}) {
  return (
    <div className="nt-row" role="row" data-row-index={index} data-key={row.key} style={{ height: ROW_HEIGHT }}>
      <span className="nt-cell nt-kind" role="cell">{KIND_LABELS[row.kind]}</span>
      <span className="nt-cell nt-name mono" role="cell" title={row.key}>{componentLabel(row)}</span>
      <span className="nt-cell nt-pos mono" role="cell">{positionLabel(row, 0, tokens)}</span>
      {METRICS.flatMap((metric) => sides(comparing).map((side) => {
        const v = value(row, metric, side);
        return (
          <span key={`${metric}.${side}`} className="nt-cell nt-num mono" role="cell" data-col={`${metric}.${side}`}
            style={{ background: divergingColor(v, scales.get(`${metric}.${side}`) ?? 0) }}>
            {formatNumber(v)}
          </span>
        );
      }))}
      <span className="nt-cell nt-actions" role="cell"><Actions row={row} comparing={comparing} onAction={onAction} /></span>
    </div>
  );
});

const ALL_KINDS: NodeKind[] = ["embedding", "pos_embedding", "attn_head", "mlp_neuron", "sae_latent", "sae_error"];

export function NodeTable({ rows, tokens, comparing, view, onSort, onFilter, onAction, layers, height = 480 }: NodeTableProps) {
  const shown = useMemo(() => tableRows(rows, view), [rows, view]);
  const scales = useMemo(() => {
    const m = new Map<string, number>();
    for (const metric of METRICS) for (const side of sides(comparing)) m.set(`${metric}.${side}`, columnScale(shown, metric, side));
    return m;
  }, [shown, comparing]);
  const present = useMemo(() => ALL_KINDS.filter((k) => rows.some((r) => r.kind === k)), [rows]);
  const sort = view.sort;
  const header = (metric: Metric, side: Side) => {
    const active = sort.metric === metric && sort.side === side;
    const next: SortSpec = active ? { ...sort, desc: !sort.desc } : { metric, side, desc: true, abs: sort.abs };
    return (
      <button key={`${metric}.${side}`} className={`nt-cell nt-num nt-head${active ? " active" : ""}`} role="columnheader"
        aria-sort={active ? (sort.desc ? "descending" : "ascending") : "none"} data-sort={`${metric}.${side}`}
        onClick={() => onSort(next)} title={`sort by ${metric.replace("_", " ")} (${side})${metric === "total_effect" ? TOTAL_EFFECT_NOTE : ""}`}>
        {METRIC_LABELS[metric]}{comparing ? ` ${side === "diff" ? "Δ" : side === "left" ? "L" : "R"}` : ""}
        {active ? (sort.desc ? " ▼" : " ▲") : ""}
      </button>
    );
  };
  return (
    <div className="node-table" role="grid" aria-label="node table" aria-rowcount={shown.length}>
      <div className="nt-filters">
        <span className="muted">type</span>
        {present.map((k) => (
          <label key={k} className="chip">
            <input type="checkbox" checked={view.kinds.length === 0 || view.kinds.includes(k)}
              onChange={(e) => {
                const current = view.kinds.length === 0 ? present : view.kinds;
                const kinds = e.target.checked ? [...current, k] : current.filter((x) => x !== k);
                onFilter({ kinds: kinds.length === present.length ? [] : kinds });
              }} />
            {KIND_LABELS[k]}
          </label>
        ))}
        <label>
          <span className="muted">layer </span>
          <select aria-label="layer filter" value={view.layer ?? ""}
            onChange={(e) => onFilter({ layer: e.target.value === "" ? null : Number(e.target.value) })}>
            <option value="">all</option>
            {Array.from({ length: layers }, (_, l) => <option key={l} value={l}>{l}</option>)}
          </select>
        </label>
        <input aria-label="search nodes" placeholder="search (e.g. L1.H2)" value={view.search}
          onChange={(e) => onFilter({ search: e.target.value })} />
        <label className="chip">
          <input type="checkbox" checked={sort.abs} onChange={(e) => onSort({ ...sort, abs: e.target.checked })} />|value|
        </label>
        <span className="muted" data-testid="row-count">{shown.length} of {rows.length} nodes</span>
      </div>
      <div className="nt-row nt-header" role="row">
        <span className="nt-cell nt-kind">type</span>
        <span className="nt-cell nt-name">node</span>
        <span className="nt-cell nt-pos">token (q ← k)</span>
        {METRICS.flatMap((metric) => sides(comparing).map((side) => header(metric, side)))}
        <span className="nt-cell nt-actions">actions</span>
      </div>
      {shown.length === 0 ? (
        <div className="empty">No nodes match the filters.</div>
      ) : (
        <VirtualRows count={shown.length} rowHeight={ROW_HEIGHT} height={Math.min(height, shown.length * ROW_HEIGHT + 2)}
          renderRow={(i) => (
            <Row key={shown[i].key} row={shown[i]} index={i} tokens={tokens} comparing={comparing} scales={scales} onAction={onAction} />
          )} />
      )}
    </div>
  );
}
