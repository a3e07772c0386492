/** The node table: every node's activation, write magnitude, direct and estimated total effect
 * (left / right / diff when comparing two prompts), sortable, filterable, colour-scaled, virtualized. */
import { memo, useMemo } from "react";
import type { NodeKind, NodeRow } from "../api/client";
import { divergingColor, formatNumber } from "../lib/color";
import { TIPS } from "../lib/glossary";
import { columnScale, componentLabel, KIND_LABELS, positionLabel, tableRows, topKExplanation, value } from "../lib/nodes";
import type { HeadScope, ShownEstimate } from "../lib/requests";
import { EXTRA_COLUMNS, METRICS, type Column, type DebuggerState, type Metric, type Side, type SortSpec } from "../lib/urlState";
import { VirtualRows } from "./VirtualRows";
import { ExplanationCell, ExplanationHeader, ExplanationsProvider } from "./ExplanationCell";

export const METRIC_LABELS: Record<Column, string> = {
  activation: "act",
  write_magnitude: "write",
  direct_effect: "direct",
  total_effect: "total",
  exact_effect: "exact",
  graddrop: "graddrop",
};

/** Which linearisation the "total" column shows (the request's total_effect_ln, README: Glossary), and why
 * live is the default. */
export const TOTAL_EFFECT_NOTE: Record<ShownEstimate, string> = {
  live: " Shown: linearised at the live final LayerNorm (as requested; the default), the true gradient of the loss" +
    " (attribution patching), whose scale follows the node as in a real ablation. Live is the default because it ranks" +
    " nodes the way ablating them does, better than the frozen-scale estimate (scripts/eval_attribution.py).",
  frozen: " Shown: linearised with the final LayerNorm scale held constant (as requested: frozen, TDB's convention)." +
    " Live, the default, is the true gradient and ranks nodes the way ablating them does, better than this" +
    " (scripts/eval_attribution.py).",
  trace: " Shown: tracing, linearised at the traced node's frozen read point (the live / frozen choice applies when" +
    " the loss is explained).",
};

export type NodeAction =
  | { type: "ablate"; mode: "zero" | "mean" | "resample"; scope?: HeadScope }
  | { type: "patch" }
  | { type: "trace"; through: "pre" | "q" | "k" | "qk" | "v" }
  | { type: "steer" }
  | { type: "page" };

export interface NodeTableProps {
  rows: NodeRow[];
  tokens: string[];
  comparing: boolean;
  view: Pick<DebuggerState, "kinds" | "layer" | "search" | "sort"> & Partial<Pick<DebuggerState, "group" | "cols">>;
  onSort: (sort: SortSpec) => void;
  onFilter: (filter: { kinds?: NodeKind[]; layer?: number | null; search?: string; group?: boolean; cols?: Metric[] }) => void;
  onAction?: (row: NodeRow, action: NodeAction) => void;
  layers: number;
  height?: number;
  /** the request's top-k and prompt count (to explain the row count) */
  topK?: number;
  /** the linearisation of the request's total column (default: the server's, live) */
  estimate?: ShownEstimate;
}

/** The metric columns shown: the view's choice, else all four (direct and total when comparing,
 * so that 3 sides × the columns and the actions fit a laptop screen). */
export function shownMetrics(cols: Metric[] | undefined, comparing: boolean): Metric[] {
  if (cols && cols.length) return METRICS.filter((m) => cols.includes(m));
  return comparing ? ["direct_effect", "total_effect"] : [...METRICS];
}

/** The value columns: the shown metrics, then the extra columns the rows carry (exact right after
 * total when total is shown, else after the metrics; graddrop last). */
export function tableColumns(metrics: Metric[], rows: NodeRow[]): Column[] {
  const extras: Column[] = EXTRA_COLUMNS.filter((c) => rows.some((r) => r.values.some((v) => v?.[c] !== null && v?.[c] !== undefined)));
  const after: Column[] = metrics.includes("total_effect") ? extras.filter((c) => c === "exact_effect") : [];
  return [
    ...metrics.flatMap((m): Column[] => (m === "total_effect" ? [m, ...after] : [m])),
    ...extras.filter((c) => !after.includes(c)),
  ];
}

/** An extra column is empty, not "–", where a row has no value (it was not measured for that row). */
function isExtra(column: Column): boolean {
  return (EXTRA_COLUMNS as readonly Column[]).includes(column);
}

/** A cell's tooltip: what a head's act is; an extra column's value in full precision. */
function cellTitle(row: NodeRow, column: Column, v: number | null): string | undefined {
  if (column === "activation" && row.kind === "attn_head") return "attention probability of this (query, key) pair";
  if (isExtra(column) && v !== null) return `${METRIC_LABELS[column]} ${v}`;
  return undefined;
}

const ROW_HEIGHT = 24;

function sides(comparing: boolean): Side[] {
  return comparing ? ["left", "right", "diff"] : ["left"];
}

function Actions({ row, comparing, onAction }: { row: NodeRow; comparing: boolean; onAction: NodeTableProps["onAction"] }) {
  if (!onAction) return null;
  const act = (a: NodeAction) => () => onAction(row, a);
  const paged = row.kind === "mlp_neuron" || row.kind === "attn_head" || row.kind === "sae_latent";
  const head = row.kind === "attn_head";
  const scope: HeadScope | undefined = head ? "head" : undefined;
  return (
    <span className="actions">
      {head && <span className="act-group" title={TIPS.headScope}>head@q</span>}
      <button title={TIPS.ablateZero} onClick={act({ type: "ablate", mode: "zero", scope })}>0</button>
      <button title={TIPS.ablateMean} onClick={act({ type: "ablate", mode: "mean", scope })}>μ</button>
      <button title={TIPS.ablateResample} onClick={act({ type: "ablate", mode: "resample", scope })}>rs</button>
      {comparing && <button title={TIPS.patch} onClick={act({ type: "patch" })}>patch</button>}
      {head && (
        <>
          <span className="act-group" title={TIPS.pairScope}>pair</span>
          <button aria-label="zero-ablate pair" title={`${TIPS.pairScope} ${TIPS.ablateZero}`}
            onClick={act({ type: "ablate", mode: "zero", scope: "pair" })}>0ₚ</button>
          <span className="act-group">trace</span>
          <button title={TIPS.traceQ} onClick={act({ type: "trace", through: "q" })}>q</button>
          <button title={TIPS.traceK} onClick={act({ type: "trace", through: "k" })}>k</button>
          <button title={TIPS.traceQK} onClick={act({ type: "trace", through: "qk" })}>qk</button>
          <button title={TIPS.traceV} onClick={act({ type: "trace", through: "v" })}>v</button>
        </>
      )}
      {(row.kind === "mlp_neuron" || row.kind === "sae_latent") && (
        <>
          <button title={TIPS.trace} onClick={act({ type: "trace", through: "pre" })}>trace</button>
          <button title={TIPS.steer} onClick={act({ type: "steer" })}>steer</button>
        </>
      )}
      {paged && <button title={TIPS.page} onClick={act({ type: "page" })}>page</button>}
    </span>
  );
}

const Row = memo(function Row({ row, index, tokens, comparing, metrics, scales, onAction }: {
  row: NodeRow; index: number; tokens: string[]; comparing: boolean; metrics: Column[]; scales: Map<string, number>;
  onAction: NodeTableProps["onAction"];
}) {
  return (
    <div className="nt-row" role="row" data-row-index={index} data-key={row.key} style={{ height: ROW_HEIGHT }}>
      <span className="nt-cell nt-kind" role="cell">{KIND_LABELS[row.kind]}</span>
      <span className="nt-cell nt-name mono" role="cell" title={row.key}>{componentLabel(row)}</span>
      <span className="nt-cell nt-pos mono" role="cell">{positionLabel(row, 0, tokens)}</span>
      {metrics.flatMap((metric) => sides(comparing).map((side) => {
        const v = value(row, metric, side);
        return (
          <span key={`${metric}.${side}`} className="nt-cell nt-num mono" role="cell" data-col={`${metric}.${side}`}
            title={cellTitle(row, metric, v)}
            style={{ background: divergingColor(v, scales.get(`${metric}.${side}`) ?? 0) }}>
            {v === null && isExtra(metric) ? "" : formatNumber(v)}
          </span>
        );
      }))}
      <span className="nt-cell nt-actions" role="cell"><Actions row={row} comparing={comparing} onAction={onAction} /></span>
      <ExplanationCell row={row} />
    </div>
  );
});

const ALL_KINDS: NodeKind[] = ["embedding", "pos_embedding", "attn_head", "mlp_neuron", "sae_latent", "sae_error"];

const SIDE_TIPS: Record<Side, string> = { left: TIPS.sideL, right: TIPS.sideR, diff: TIPS.sideDiff };

export function NodeTable({ rows, tokens, comparing, view, onSort, onFilter, onAction, layers, height = 480, topK,
  estimate = "live" }: NodeTableProps) {
  const shown = useMemo(() => tableRows(rows, view), [rows, view]);
  const metrics = useMemo(() => shownMetrics(view.cols, comparing), [view.cols, comparing]);
  const columns = useMemo(() => tableColumns(metrics, rows), [metrics, rows]);
  const scales = useMemo(() => {
    const m = new Map<string, number>();
    for (const column of columns) for (const side of sides(comparing)) m.set(`${column}.${side}`, columnScale(shown, column, side));
    return m;
  }, [shown, columns, comparing]);
  const present = useMemo(() => ALL_KINDS.filter((k) => rows.some((r) => r.kind === k)), [rows]);
  const sort = view.sort;
  const header = (metric: Column, side: Side) => {
    const active = sort.metric === metric && sort.side === side;
    const next: SortSpec = active ? { ...sort, desc: !sort.desc } : { metric, side, desc: true, abs: sort.abs };
    return (
      <button key={`${metric}.${side}`} className={`nt-cell nt-num nt-head${active ? " active" : ""}`} role="columnheader"
        aria-sort={active ? (sort.desc ? "descending" : "ascending") : "none"} data-sort={`${metric}.${side}`}
        onClick={() => onSort(next)} title={`${TIPS[metric]}${metric === "total_effect" ? TOTAL_EFFECT_NOTE[estimate] : ""}${comparing ? ` ${SIDE_TIPS[side]}` : ""} Click to sort.`}>
        {METRIC_LABELS[metric]}{comparing ? ` ${side === "diff" ? "Δ" : side === "left" ? "L" : "R"}` : ""}
        {active ? (sort.desc ? " ▼" : " ▲") : ""}
      </button>
    );
  };
  return (
    <ExplanationsProvider rows={rows}>
    <div className="node-table" role="grid" aria-label="node table" aria-rowcount={shown.length}>
      <div className="nt-filters">
        <span className="muted" title={TIPS.kindFilter}>type</span>
        {present.map((k) => (
          <label key={k} className="chip" title={TIPS.kindFilter}>
            <input type="checkbox" checked={view.kinds.length === 0 || view.kinds.includes(k)}
              onChange={(e) => {
                const current = view.kinds.length === 0 ? present : view.kinds;
                const kinds = e.target.checked ? [...current, k] : current.filter((x) => x !== k);
                onFilter({ kinds: kinds.length === present.length ? [] : kinds });
              }} />
            {KIND_LABELS[k]}
          </label>
        ))}
        <label title={TIPS.layerFilter}>
          <span className="muted">layer </span>
          <select aria-label="layer filter" value={view.layer ?? ""}
            onChange={(e) => onFilter({ layer: e.target.value === "" ? null : Number(e.target.value) })}>
            <option value="">all</option>
            {Array.from({ length: layers }, (_, l) => <option key={l} value={l}>{l}</option>)}
          </select>
        </label>
        <input aria-label="search nodes" title={TIPS.search} placeholder="search (e.g. L1.H2)" value={view.search}
          onChange={(e) => onFilter({ search: e.target.value })} />
        <label className="chip" title={TIPS.abs}>
          <input type="checkbox" checked={sort.abs} onChange={(e) => onSort({ ...sort, abs: e.target.checked })} />|value|
        </label>
        <label className="chip" title={TIPS.group}>
          <input type="checkbox" aria-label="group by type" checked={!!view.group} onChange={(e) => onFilter({ group: e.target.checked })} />group by type
        </label>
        <span className="muted" title="metric columns shown">columns</span>
        {METRICS.map((m) => (
          <label key={m} className="chip" title={TIPS[m]}>
            <input type="checkbox" aria-label={`column ${METRIC_LABELS[m]}`} checked={metrics.includes(m)} onChange={(e) => {
              const next = e.target.checked ? [...metrics, m] : metrics.filter((x) => x !== m);
              if (next.length) onFilter({ cols: METRICS.filter((x) => next.includes(x)) });
            }} />{METRIC_LABELS[m]}
          </label>
        ))}
        <span className="muted" data-testid="row-count">{shown.length} of {rows.length} nodes</span>
        {topK !== undefined && (
          <span className="muted topk-note" data-testid="topk-note" title={TIPS.topK}>
            {topKExplanation(topK, Math.max(1, rows[0]?.values.length ?? 1), rows.length)}
          </span>
        )}
      </div>
      <div className="nt-row nt-header" role="row">
        <span className="nt-cell nt-kind" title={TIPS.kind}>type</span>
        <span className="nt-cell nt-name" title={TIPS.nodeName}>node</span>
        <span className="nt-cell nt-pos" title={TIPS.position}>token (q ← k)</span>
        {columns.flatMap((metric) => sides(comparing).map((side) => header(metric, side)))}
        <span className="nt-cell nt-actions">actions</span>
        <ExplanationHeader />
      </div>
      {shown.length === 0 ? (
        <div className="empty">No nodes match the filters.</div>
      ) : (
        <VirtualRows count={shown.length} rowHeight={ROW_HEIGHT} height={Math.min(height, shown.length * ROW_HEIGHT + 2)}
          renderRow={(i) => (
            <Row key={shown[i].key} row={shown[i]} index={i} tokens={tokens} comparing={comparing} metrics={columns} scales={scales} onAction={onAction} />
          )} />
      )}
    </div>
    </ExplanationsProvider>
  );
}
