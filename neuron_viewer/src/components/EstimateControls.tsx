/** The node table request's estimate options (issue 23): where the estimated total effect is
 * linearised, the AtP* softmax correction, real ablations of the top N rows and GradDrop scores.
 * Each control is disabled, with its reason, where the server would refuse it. */
import { TIPS } from "../lib/glossary";
import { measuresApply, softmaxApplies, type EstimateOptions } from "../lib/requests";
import type { AttributionRequest } from "../api/client";
import type { DebuggerState, EffectLN } from "../lib/urlState";

export interface EstimateControlsProps {
  options: EstimateOptions;
  /** the loss and trace of the request the options go with (they decide which options apply) */
  loss: AttributionRequest["loss"];
  trace: DebuggerState["trace"];
  /** the largest N the server takes */
  maxExact: number;
  onChange: (patch: Partial<EstimateOptions>) => void;
}

export function EstimateControls({ options, loss, trace, maxExact, onChange }: EstimateControlsProps) {
  const softmaxOk = softmaxApplies(loss, trace);
  const measuresOk = measuresApply(trace);
  return (
    <div className="toggles estimate-controls" role="group" aria-label="estimate options">
      <label title={TIPS.estimateLN}>
        <span className="muted">estimate </span>
        <select aria-label="estimate" value={options.estimate}
          onChange={(e) => onChange({ estimate: e.target.value as EffectLN })}>
          <option value="live">live (attribution patching)</option>
          <option value="frozen">frozen (TDB)</option>
        </select>
      </label>
      <label className="chip" title={softmaxOk ? TIPS.softmax : `${TIPS.softmax} ${TIPS.softmaxOff}`}>
        <input type="checkbox" aria-label="AtP* softmax correction" disabled={!softmaxOk} checked={options.softmax && softmaxOk}
          onChange={(e) => onChange({ softmax: e.target.checked })} />AtP* softmax correction
      </label>
      <label title={measuresOk ? TIPS.exactTopN : `${TIPS.exactTopN} ${TIPS.measuresOff}`}>
        exact ablation for the top{" "}
        <input type="number" aria-label="exact ablation for the top N rows" min={0} max={maxExact} step={1}
          disabled={!measuresOk} value={options.exactTopN} style={{ width: "4em" }}
          onChange={(e) => onChange({ exactTopN: clampRows(e.target.value, maxExact) })} /> rows
      </label>
      <label className="chip" title={measuresOk ? TIPS.graddropToggle : `${TIPS.graddropToggle} ${TIPS.measuresOff}`}>
        <input type="checkbox" aria-label="GradDrop" disabled={!measuresOk} checked={options.graddrop}
          onChange={(e) => onChange({ graddrop: e.target.checked })} />GradDrop
      </label>
    </div>
  );
}

/** A typed row count as a whole number in [0, max] (empty or junk: 0). */
export function clampRows(text: string, max: number): number {
  const n = Math.floor(Number(text));
  return Number.isFinite(n) ? Math.min(max, Math.max(0, n)) : 0;
}
