/** The node table's explanation column: the best explanation of each row's node (truncated, in full
 * on hover) with its simulation score. One batch lookup per table (POST /api/v1/explanations/lookup),
 * shared with the rows through a context so the attribution response stays as it is. */
import { createContext, useContext, useMemo, type ReactNode } from "react";
import { unwrap, type NodeRow } from "../api/client";
import { explanationKey, formatScore, lookupNodes, type ExplanationBrief } from "../lib/explanations";
import { useClient, useLoad } from "../lib/useApi";
import "./explanations.css";

const ExplanationsContext = createContext<Map<string, ExplanationBrief>>(new Map());

const MAX_LOOKUP = 5000;

/** Looks up the explanations of `rows`' nodes and provides them to the cells below. */
export function ExplanationsProvider({ rows, children }: { rows: NodeRow[]; children: ReactNode }) {
  const client = useClient();
  const nodes = useMemo(() => lookupNodes(rows).slice(0, MAX_LOOKUP), [rows]);
  const key = nodes.length ? nodes.map((n) => `${n.kind}:${n.sae ?? n.layer}:${n.index}`).join(",") : null;
  const found = useLoad(key, () => unwrap(client.POST("/api/v1/explanations/lookup", { body: { nodes } })));
  const map = useMemo(() => new Map(Object.entries(found.status === "ok" ? found.data.explanations : {})), [found]);
  return <ExplanationsContext.Provider value={map}>{children}</ExplanationsContext.Provider>;
}

export function ExplanationHeader() {
  return <span className="nt-cell nt-expl" role="columnheader" title="best explanation (simulation score)">explanation</span>;
}

export function ExplanationCell({ row }: { row: NodeRow }) {
  const explanations = useContext(ExplanationsContext);
  const key = explanationKey(row);
  const e = key ? explanations.get(key) : undefined;
  return (
    <span className="nt-cell nt-expl" role="cell" data-col="explanation"
      title={e ? `${e.text}\n\nscore ${formatScore(e.score)} · ${e.method}` : undefined}>
      {e && <><span className="expl-text">{e.text}</span><span className="expl-score mono">{formatScore(e.score)}</span></>}
    </span>
  );
}
