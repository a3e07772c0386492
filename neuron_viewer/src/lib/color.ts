/** Colour scales: diverging (blue = negative, red = positive) and sequential (white → orange). */

function clamp01(x: number): number {
  return Math.max(0, Math.min(1, x));
}

/** Background for a signed value scaled by `scale` (the column's largest |value|). */
export function divergingColor(v: number | null | undefined, scale: number): string {
  if (v === null || v === undefined || !Number.isFinite(v) || scale <= 0) return "transparent";
  const t = clamp01(Math.abs(v) / scale);
  const alpha = (0.08 + 0.72 * t).toFixed(3);
  return v >= 0 ? `rgba(214, 39, 40, ${alpha})` : `rgba(31, 119, 180, ${alpha})`;
}

/** Background for a non-negative value (token heatmaps). */
export function sequentialColor(v: number | null | undefined, scale: number): string {
  if (v === null || v === undefined || !Number.isFinite(v) || scale <= 0 || v <= 0) return "transparent";
  const t = clamp01(v / scale);
  return `rgba(255, 127, 14, ${(0.9 * t).toFixed(3)})`;
}

export function formatNumber(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined) return "–";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toFixed(digits);
}

/** A token as shown: visible spaces and newlines, monospace in the UI. */
export function showToken(token: string): string {
  return token.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "⇥");
}
