/** Reading a node page's `data` (the dataset's record passed through as JSON: mechscope's
 * NodePageData, see datasets/node_dataset/records.py) defensively: every field may be missing. */

export interface ExampleWindow {
  tokens: string[];
  activations: number[];
  max_activation: number;
  max_position?: number | null;
  token_pair_activations?: number[] | null;
}

export interface HistogramData { edges: number[]; counts: number[]; underflow?: number; overflow?: number }
export interface TokenEffect { token: string; token_id: number; value: number }

export interface PageData {
  top_examples: ExampleWindow[];
  random_sample: ExampleWindow[];
  quantile_samples: ExampleWindow[][] | null;
  quantile_boundaries: number[] | null;
  stats: Record<string, number | null>;
  histogram: HistogramData | null;
  promoted_tokens: TokenEffect[];
  suppressed_tokens: TokenEffect[];
  token_pair: boolean;
  source: string;
}

function windows(x: unknown): ExampleWindow[] {
  if (!Array.isArray(x)) return [];
  return x.filter((w): w is ExampleWindow => !!w && Array.isArray((w as ExampleWindow).tokens) && Array.isArray((w as ExampleWindow).activations))
    .map((w) => ({ ...w, max_activation: typeof w.max_activation === "number" ? w.max_activation : Math.max(0, ...w.activations) }));
}

export function readPage(data: Record<string, unknown>): PageData {
  const q = data.quantile_samples;
  const hist = data.histogram as HistogramData | null | undefined;
  return {
    top_examples: windows(data.top_examples),
    random_sample: windows(data.random_sample),
    quantile_samples: Array.isArray(q) ? q.map(windows) : null,
    quantile_boundaries: Array.isArray(data.quantile_boundaries) ? (data.quantile_boundaries as number[]) : null,
    stats: (data.stats && typeof data.stats === "object" ? data.stats : {}) as Record<string, number | null>,
    histogram: hist && Array.isArray(hist.edges) && Array.isArray(hist.counts) ? hist : null,
    promoted_tokens: Array.isArray(data.promoted_tokens) ? (data.promoted_tokens as TokenEffect[]) : [],
    suppressed_tokens: Array.isArray(data.suppressed_tokens) ? (data.suppressed_tokens as TokenEffect[]) : [],
    token_pair: data.token_pair === true,
    source: typeof data.source === "string" ? data.source : "",
  };
}

/** Row `query` of a flattened lower-triangular (query, key <= query) matrix (TDB's layout). */
export function triangleRow(flat: number[], query: number): number[] {
  const start = (query * (query + 1)) / 2;
  return flat.slice(start, start + query + 1);
}
