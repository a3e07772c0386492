/** The layer × head grid (POST /heads/grid): per head, its direct effect, its estimated total
 * effect (summed over its pairs) or the exact effect of zero-ablating it; click a cell to show that
 * head's rows in the node table. */
import { useMemo, useState } from "react";
import { unwrap, type ServerInfo } from "../api/client";
import { Status } from "../components/Status";
import { divergingColor, formatNumber } from "../lib/color";
import { GLOSSARY, TIPS } from "../lib/glossary";
import { lossSpec } from "../lib/requests";
import { useClient, useLoad } from "../lib/useApi";
import type { DebuggerState } from "../lib/urlState";

type GridMetric = "direct_effect" | "total_effect" | "ablation_effect";
const METRIC_NAMES: Record<GridMetric, string> = {
  direct_effect: "direct effect", total_effect: "estimated total effect", ablation_effect: "zero-ablation effect",
};
const METRIC_TIPS: Record<GridMetric, string> = {
  direct_effect: GLOSSARY.direct_effect, total_effect: GLOSSARY.total_effect,
  ablation_effect: "The objective minus the objective with the head's output zeroed at every position (exact, one forward pass per head).",
};

export function HeadGridPanel({ state, navigate }: { state: DebuggerState; info: ServerInfo | null; navigate: (s: DebuggerState) => void }) {
  const client = useClient();
  const [metric, setMetric] = useState<GridMetric>("direct_effect");
  const body = useMemo(() => ({ prompt: state.prompt, loss: lossSpec(state) }), [state]);
  const ready = state.prompt !== "" && state.targets.length + state.distractors.length > 0;
  const grid = useLoad(ready ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/heads/grid", { body })));
  return (
    <section className="panel" aria-label="head grid">
      <div className="panel-head" title={TIPS.headGrid}>
        <strong>Heads: layer × head</strong>{" "}
        <select aria-label="head grid metric" value={metric} onChange={(e) => setMetric(e.target.value as GridMetric)} title={METRIC_TIPS[metric]}>
          {(Object.keys(METRIC_NAMES) as GridMetric[]).map((m) => <option key={m} value={m} title={METRIC_TIPS[m]}>{METRIC_NAMES[m]}</option>)}
        </select>{" "}
        <span className="muted">{METRIC_TIPS[metric]} Click a cell to list the head's pairs in the node table.</span>
      </div>
      {!ready && <p className="muted">The grid needs a prompt and a target or distractor.</p>}
      <Status load={grid} what="head grid" />
      {grid.status === "ok" && (() => {
        const values = grid.data[metric];
        const scale = Math.max(1e-12, ...values.flat().map(Math.abs));
        return (
          <>
            <div className="mono muted">objective {formatNumber(grid.data.loss)} · colour scale ±{formatNumber(scale)}</div>
            <table className="heatmap head-grid mono" aria-label="head grid table">
              <thead><tr><th />{values[0].map((_, h) => <th key={h}>H{h}</th>)}</tr></thead>
              <tbody>
                {values.map((row, l) => (
                  <tr key={l}>
                    <th>L{l}</th>
                    {row.map((v, h) => (
                      <td key={h} data-head={`${l},${h}`} title={`L${l}.H${h}: ${METRIC_NAMES[metric]} ${formatNumber(v)}`}
                        style={{ background: divergingColor(v, scale) }}
                        onClick={() => navigate({ ...state, panel: "none", layer: l, kinds: ["attn_head"], search: `L${l}.H${h}` })}>
                        {v.toFixed(2)}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        );
      })()}
    </section>
  );
}
