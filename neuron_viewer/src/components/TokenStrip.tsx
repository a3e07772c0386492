/** Per-token summaries of the estimated total (or direct) effect, as a coloured strip. */
import { useState } from "react";
import type { TokenSummary } from "../api/client";
import { divergingColor, formatNumber, showToken } from "../lib/color";

const FIELDS = {
  all: (s: TokenSummary) => s.embeddings + s.mlp + s.attention_by_query,
  embeddings: (s: TokenSummary) => s.embeddings,
  mlp: (s: TokenSummary) => s.mlp,
  attention_by_query: (s: TokenSummary) => s.attention_by_query,
  attention_by_key: (s: TokenSummary) => s.attention_by_key,
  direct_all: (s: TokenSummary) => s.direct_embeddings + s.direct_mlp + s.direct_attention_by_query,
} as const;
type Field = keyof typeof FIELDS;

export function TokenStrip({ summaries }: { summaries: TokenSummary[] }) {
  const [field, setField] = useState<Field>("all");
  const values = summaries.map(FIELDS[field]);
  const scale = Math.max(0, ...values.map(Math.abs));
  return (
    <div className="token-strip" aria-label="token effects">
      <select aria-label="token summary" title="Per token, the sum over its nodes of the estimated total effect (activation × ∂objective/∂activation) or of the direct effect, by component type." value={field} onChange={(e) => setField(e.target.value as Field)}>
        <option value="all">total effect (emb + mlp + attn by query)</option>
        <option value="embeddings">embeddings</option>
        <option value="mlp">MLP</option>
        <option value="attention_by_query">attention, by query token</option>
        <option value="attention_by_key">attention, by key token</option>
        <option value="direct_all">direct effect</option>
      </select>
      <div className="strip mono">
        {summaries.map((s, i) => (
          <span key={i} className="tok" style={{ background: divergingColor(values[i], scale) }}
            title={`${i} ${JSON.stringify(s.token)}: ${formatNumber(values[i])}\nemb ${formatNumber(s.embeddings)} mlp ${formatNumber(s.mlp)} attn(q) ${formatNumber(s.attention_by_query)} attn(k) ${formatNumber(s.attention_by_key)}`}>
            {showToken(s.token)}
          </span>
        ))}
      </div>
    </div>
  );
}
