/** Find nodes by what their explanations say ("years", "names", "attends to the previous token"):
 * GET /api/v1/explanations/search; a hit opens the node's page. */
import { useEffect, useState } from "react";
import { unwrap } from "../api/client";
import { formatScore, hitAddress } from "../lib/explanations";
import { useClient, useLoad } from "../lib/useApi";
import type { NodeAddress } from "../lib/urlState";
import "./explanations.css";

export function ExplanationSearch({ openNode }: { openNode: (node: NodeAddress) => void }) {
  const client = useClient();
  const [text, setText] = useState("");
  const [query, setQuery] = useState("");
  useEffect(() => {
    const t = setTimeout(() => setQuery(text.trim()), 250);
    return () => clearTimeout(t);
  }, [text]);
  const found = useLoad(query ? `search:${query}` : null,
    () => unwrap(client.GET("/api/v1/explanations/search", { params: { query: { q: query, limit: 50 } } })));
  return (
    <div className="expl-search">
      <input aria-label="search explanations" placeholder="find nodes by explanation (e.g. years)" value={text}
        onChange={(e) => setText(e.target.value)} />
      {found.status === "loading" && <span className="muted">searching…</span>}
      {found.status === "error" && <span className="muted" role="alert">{found.message}</span>}
      {found.status === "ok" && (
        <>
          <span className="muted" data-testid="explanation-hit-count">{found.data.hits.length} nodes</span>
          <ul className="expl-hits" aria-label="explanation search results">
            {found.data.hits.map((h) => (
              <li key={`${h.dataset}:${h.key}`} data-key={h.key}>
                <button onClick={() => openNode(hitAddress(h))} title="open the node page">{h.key}</button>
                <span className="mono muted">{formatScore(h.explanation.score)}</span> {h.explanation.text}
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
