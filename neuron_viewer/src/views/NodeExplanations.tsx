/** The node page's explanations: every explanation of the node with its method, simulation score,
 * baselines (a random other node's explanation, the empty one) and detection accuracy; and
 * "explain this node now" with the offline explainer or the configured LLM. */
import { useState } from "react";
import { unwrap } from "../api/client";
import { formatScore } from "../lib/explanations";
import { useClient, useLoad } from "../lib/useApi";
import type { NodeAddress } from "../lib/urlState";

export function NodeExplanations({ node }: { node: NodeAddress }) {
  const client = useClient();
  const [version, setVersion] = useState(0);
  const [running, setRunning] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const id = `${node.kind}:${node.layer}:${node.index}:${node.sae ?? ""}`;
  const loaded = useLoad(`${id}:${version}`, () => unwrap(client.GET("/api/v1/explanations/{kind}/{layer}/{index}", {
    params: { path: { kind: node.kind, layer: node.layer, index: node.index }, query: { sae: node.sae ?? undefined } },
  })));
  const data = loaded.status === "ok" ? loaded.data : null;
  const explain = async (explainer: "offline" | "llm") => {
    setRunning(explainer);
    setError(null);
    try {
      await unwrap(client.POST("/api/v1/explanations/explain", {
        body: { kind: node.kind, layer: node.layer, index: node.index, sae: node.sae ?? null, explainer },
      }));
      setVersion((v) => v + 1); // reload: the server stored it
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setRunning(null);
    }
  };
  return (
    <section className="node-explanations" aria-label="explanations">
      <table className="dense" data-testid="explanations">
        <caption>explanations</caption>
        <thead><tr><th>explanation</th><th>method</th><th className="num">score</th><th className="num">random</th>
          <th className="num">empty</th><th className="num" title="balanced accuracy: detection (simulation) / fuzzing (LLM)">detection</th></tr></thead>
        <tbody>
          {data?.explanations.map((e, i) => (
            <tr key={i} data-explainer={e.explainer}>
              <td className="text">{e.text || <span className="muted">(nothing to say)</span>}</td>
              <td className="mono">{e.method}</td>
              <td className="num mono">{formatScore(e.score)}</td>
              <td className="num mono">{formatScore(e.baselines?.random)}</td>
              <td className="num mono">{formatScore(e.baselines?.empty)}</td>
              <td className="num mono" title={e.fuzzing == null ? undefined : `LLM fuzzing ${formatScore(e.fuzzing)}`}>
                {formatScore(e.detection)}{e.fuzzing == null ? "" : ` / ${formatScore(e.fuzzing)}`}</td>
            </tr>
          ))}
          {data && data.explanations.length === 0 && <tr><td colSpan={6} className="muted">no explanation yet</td></tr>}
        </tbody>
      </table>
      <div>
        <button disabled={running !== null} onClick={() => explain("offline")} data-testid="explain-offline">
          {running === "offline" ? "explaining…" : "explain this node now"}
        </button>{" "}
        <button disabled={running !== null} onClick={() => explain("llm")} title="needs MECHSCOPE_LLM_BASE_URL and MECHSCOPE_LLM_MODEL on the server">
          {running === "llm" ? "asking the LLM…" : "explain with the LLM"}
        </button>
        <span className="muted"> score: correlation of simulated and real activations on held-out examples</span>
      </div>
      {error && <div className="notice" role="alert">{error}</div>}
      {loaded.status === "error" && <div className="notice" role="alert">Could not load explanations: {loaded.message}</div>}
    </section>
  );
}
