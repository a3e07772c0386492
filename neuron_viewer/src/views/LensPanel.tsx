/** Logit lens: per layer, the residual stream at the last token read through the final LayerNorm
 * and the unembedding — the targets' and distractors' probabilities and ranks, and the top tokens. */
import { useMemo } from "react";
import { unwrap } from "../api/client";
import { Status } from "../components/Status";
import { formatProb } from "../components/Predictions";
import { showToken } from "../lib/color";
import { TIPS } from "../lib/glossary";
import { useClient, useLoad } from "../lib/useApi";
import type { DebuggerState } from "../lib/urlState";

export function LensPanel({ state }: { state: DebuggerState }) {
  const client = useClient();
  const tracked = useMemo(() => [...state.targets, ...state.distractors].slice(0, 8), [state.targets, state.distractors]);
  const body = useMemo(() => ({ prompt: state.prompt, targets: tracked, top_k: 5 }), [state.prompt, tracked]);
  const lens = useLoad(state.prompt ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/logit-lens", { body })));
  return (
    <section className="panel" aria-label="logit lens">
      <div className="panel-head" title={TIPS.lens}>
        <strong>Logit lens</strong> <span className="muted">the residual stream before each layer (and after the last), read as if the model stopped there; probabilities at the last token</span>
      </div>
      {tracked.length < state.targets.length + state.distractors.length && <p className="muted">only the first 8 targets and distractors are tracked</p>}
      <Status load={lens} what="logit lens" />
      {lens.status === "ok" && (
        <table className="dense lens" aria-label="logit lens table">
          <thead>
            <tr><th>read at</th>{tracked.map((t) => <th key={t} className="num mono" title={state.targets.includes(t) ? "target" : "distractor"}>{showToken(t)}{state.targets.includes(t) ? " (t)" : " (d)"}</th>)}<th>top tokens</th></tr>
          </thead>
          <tbody>
            {lens.data.layers.map((layer) => (
              <tr key={layer.point} data-point={layer.point}>
                <td className="mono">{layer.point.replace("blocks.", "L").replace(".hook_", " ")}</td>
                {layer.target_probs.map((p, i) => {
                  const rank = layer.top_tokens.find((t) => t.token === tracked[i])?.rank;
                  return <td key={i} className="num mono">{formatProb(p)}{rank ? ` #${rank}` : ""}</td>;
                })}
                <td className="mono">{layer.top_tokens.map((t) => `${showToken(t.token)} ${formatProb(t.prob)}`).join("  ")}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
