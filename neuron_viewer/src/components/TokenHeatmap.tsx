/** A window of tokens, each coloured by the node's activation; for heads, hovering a query token
 * colours the keys it attends to (token-pair view) instead. */
import { useState } from "react";
import { formatNumber, sequentialColor, showToken } from "../lib/color";

export interface TokenHeatmapProps {
  tokens: string[];
  values: number[];
  scale: number;
  /** heads: the value for each key of a query token */
  pairRow?: (query: number) => number[] | null;
  highlight?: number | null;
  /** what `values` and a pair row hold, named in the tooltips (e.g. "write norm", "attention probability") */
  valueName?: string;
  pairName?: string;
}

export function TokenHeatmap({ tokens, values, scale, pairRow, highlight, valueName = "activation", pairName = "value" }: TokenHeatmapProps) {
  const [query, setQuery] = useState<number | null>(null);
  const row = query !== null && pairRow ? pairRow(query) : null;
  const rowScale = row ? Math.max(1e-12, ...row) : scale;
  return (
    <div className="token-heatmap mono" onMouseLeave={() => setQuery(null)}>
      {tokens.map((t, i) => {
        const v = row ? (i < row.length ? row[i] : null) : values[i];
        const cls = ["tok", i === highlight ? "max" : "", i === query ? "query" : "", v !== null && v !== undefined && v > 0 ? "hot" : ""].join(" ");
        return (
          <span key={i} className={cls} style={{ background: sequentialColor(v, row ? rowScale : scale) }}
            title={`${JSON.stringify(t)}: ${valueName} ${formatNumber(values[i])}${row ? ` (${pairName} from the hovered query to this key: ${formatNumber(v)})` : ""}`}
            onMouseEnter={() => pairRow && setQuery(i)}>
            {showToken(t)}
          </span>
        );
      })}
    </div>
  );
}
