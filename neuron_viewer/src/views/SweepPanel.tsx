/** Activation patching sweep (clean = the prompt, corrupted = the second prompt) as a heatmap;
 * clicking a cell selects that node in the node table. */
import { useMemo, useState } from "react";
import { unwrap, type PatchingSweepResult, type SweepKind } from "../api/client";
import { divergingColor, formatNumber, showToken } from "../lib/color";
import { lossSpec } from "../lib/requests";
import { useClient, useLoad } from "../lib/useApi";
import type { DebuggerState } from "../lib/urlState";
import { Status } from "../components/Status";

const KINDS: SweepKind[] = ["heads", "heads_by_position", "resid_pre", "attn_out", "mlp_out"];

export interface HeatmapGrid {
  rowLabels: string[];
  colLabels: string[];
  cells: (number | null)[][];
  /** what a click on (row, column) selects: layer, head (or null), position (or null) */
  select: (r: number, c: number) => { layer: number; head: number | null; position: number | null };
}

/** The sweep's values as a 2-D grid: rows are layers (or layer.head), columns heads or positions. */
export function sweepGrid(result: PatchingSweepResult): HeatmapGrid {
  const v = result.values as unknown[];
  if (result.kind === "heads_by_position") {
    const cube = v as (number | null)[][][];
    const rowLabels: string[] = [];
    const cells: (number | null)[][] = [];
    const index: [number, number][] = [];
    cube.forEach((heads, l) => heads.forEach((row, h) => { rowLabels.push(`L${l}.H${h}`); cells.push(row); index.push([l, h]); }));
    return { rowLabels, colLabels: result.tokens.map((t, i) => `${i} ${showToken(t)}`), cells,
      select: (r, c) => ({ layer: index[r][0], head: index[r][1], position: c }) };
  }
  const grid = v as (number | null)[][];
  if (result.kind === "heads")
    return { rowLabels: grid.map((_, l) => `L${l}`), colLabels: (grid[0] ?? []).map((_, h) => `H${h}`), cells: grid,
      select: (r, c) => ({ layer: r, head: c, position: null }) };
  return { rowLabels: grid.map((_, l) => `L${l}`), colLabels: result.tokens.map((t, i) => `${i} ${showToken(t)}`), cells: grid,
    select: (r, c) => ({ layer: r, head: null, position: c }) };
}

export function Heatmap({ grid, onSelect }: { grid: HeatmapGrid; onSelect: (r: number, c: number) => void }) {
  const [hover, setHover] = useState<string>("");
  return (
    <div className="heatmap-wrap">
      <table className="heatmap mono" aria-label="patching heatmap">
        <thead><tr><th />{grid.colLabels.map((c) => <th key={c} className="col-label">{c}</th>)}</tr></thead>
        <tbody>
          {grid.cells.map((row, r) => (
            <tr key={r}>
              <th>{grid.rowLabels[r]}</th>
              {row.map((x, c) => (
                <td key={c} data-cell={`${r},${c}`} style={{ background: divergingColor(x, 1) }}
                  onMouseEnter={() => setHover(`${grid.rowLabels[r]} × ${grid.colLabels[c]}: ${formatNumber(x)}`)}
                  onClick={() => onSelect(r, c)}>{x === null ? "·" : ""}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <div className="muted mono">{hover || "restored fraction of the clean loss (red 1, blue −1); click a cell to select"}</div>
    </div>
  );
}

export function SweepPanel({ state, navigate }: { state: DebuggerState; navigate: (s: DebuggerState) => void }) {
  const client = useClient();
  const body = useMemo(() => ({ clean: state.prompt, corrupted: state.prompt2, loss: lossSpec(state), kind: state.sweepKind }), [state]);
  const ready = state.prompt !== "" && state.prompt2 !== "";
  const sweep = useLoad(ready ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/patching/sweep", { body })));
  return (
    <section className="panel" aria-label="patching sweep">
      <div className="panel-head">
        <strong title="Patch each component's value from the clean prompt into the corrupted one and report the fraction of the clean objective it restores.">Patching sweep</strong> <span className="muted">clean = prompt, corrupted = second prompt</span>{" "}
        <select aria-label="sweep kind" title="What is patched from the clean run, one cell at a time: each head's output (heads), each head at each position, or the residual stream / attention / MLP output of each layer at each position." value={state.sweepKind} onChange={(e) => navigate({ ...state, sweepKind: e.target.value as SweepKind })}>
          {KINDS.map((k) => <option key={k} value={k}>{k}</option>)}
        </select>
      </div>
      {!ready && <p className="muted">A sweep needs two prompts of the same length: tick "compare with a second prompt".</p>}
      <Status load={sweep} what="patching sweep" />
      {sweep.status === "ok" && (
        <>
          <div className="mono muted">clean loss {formatNumber(sweep.data.clean_loss)} · corrupted loss {formatNumber(sweep.data.corrupted_loss)}</div>
          <Heatmap grid={sweepGrid(sweep.data)} onSelect={(r, c) => {
            const s = sweepGrid(sweep.data).select(r, c);
            navigate({ ...state, panel: "none", layer: s.layer,
              kinds: s.head !== null ? ["attn_head"] : [], search: s.head !== null ? `L${s.layer}.H${s.head}` : "" });
          }} />
        </>
      )}
    </section>
  );
}
