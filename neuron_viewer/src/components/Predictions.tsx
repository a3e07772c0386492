/** Next-token predictions: top and bottom, with target / distractor rows always shown. */
import type { PromptResult, TokenPrediction } from "../api/client";
import { formatNumber, showToken } from "../lib/color";

export function formatProb(p: number): string {
  return p >= 1e-4 ? `${(100 * p).toFixed(2)}%` : p.toExponential(1);
}

/** Long target lists (a range of 67 years) show their 10 best-ranked entries and a count. */
const MAX_TARGET_ROWS = 10;

function Rows({ title, rows, mark, limit }: { title: string; rows: TokenPrediction[]; mark?: Set<number>; limit?: number }) {
  const shown = limit !== undefined && rows.length > limit ? [...rows].sort((a, b) => a.rank - b.rank).slice(0, limit) : rows;
  return (
    <>
      <tr className="group"><th colSpan={4}>{title}</th></tr>
      {shown.length < rows.length && (
        <tr className="muted" data-testid="more-targets"><td colSpan={4}>the {limit} best-ranked of {rows.length} (all in the loss)</td></tr>
      )}
      {shown.map((p) => (
        <tr key={`${title}-${p.token_id}`} className={mark?.has(p.token_id) ? "marked" : undefined}>
          <td className="num">{p.rank}</td>
          <td className="mono">{showToken(p.token)}</td>
          <td className="num mono">{formatProb(p.prob)}</td>
          <td className="num mono">{formatNumber(p.logit, 2)}</td>
        </tr>
      ))}
    </>
  );
}

export function Predictions({ result, title }: { result: PromptResult; title: string }) {
  const targets = new Set(result.target_predictions.map((p) => p.token_id));
  return (
    <table className="dense predictions" aria-label={`predictions ${title}`}>
      <caption>{title}: next token after {JSON.stringify(result.tokens[result.loss_position] ?? "")}</caption>
      <thead><tr><th>rank</th><th>token</th><th>prob</th><th>logit</th></tr></thead>
      <tbody>
        <Rows title="targets & distractors" rows={result.target_predictions} limit={MAX_TARGET_ROWS} />
        <Rows title="top" rows={result.top_predictions.slice(0, 8)} mark={targets} />
        <Rows title="bottom" rows={result.bottom_predictions.slice(0, 4)} mark={targets} />
      </tbody>
    </table>
  );
}
