/** A synthetic attribution result of N rows (deterministic), for the performance page
 * (?view=synthetic&rows=10000) and for tests. No server involved. */
import type { AttributionResult, NodeRow } from "../api/client";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function syntheticResult(rows: number, prompts = 1, seed = 1): AttributionResult {
  const r = rng(seed);
  const nTokens = 16;
  const tokens = Array.from({ length: nTokens }, (_, i) => ` t${i}`);
  const nodes: NodeRow[] = Array.from({ length: rows }, (_, i) => {
    const head = i % 3 === 0;
    const layer = i % 12;
    const q = i % nTokens;
    return {
      key: `${head ? "attn_head" : "mlp_neuron"}:L${layer}:#${i}:@${q}${head ? `:k${i % (q + 1)}` : ""}`,
      kind: head ? "attn_head" : "mlp_neuron",
      layer,
      index: i,
      sae: null,
      positions: Array(prompts).fill(q),
      key_positions: head ? Array(prompts).fill(i % (q + 1)) : null,
      values: Array.from({ length: prompts }, () => ({
        activation: r() * 4 - 1,
        write_magnitude: r() * 3,
        direct_effect: r() * 2 - 1,
        total_effect: (r() * 2 - 1) * r(),
        attention_prob: head ? r() : null,
      })),
    };
  });
  const prompt = {
    tokens,
    token_ids: tokens.map((_, i) => 1000 + i),
    loss: 1.2345,
    loss_position: nTokens - 1,
    top_predictions: [],
    bottom_predictions: [],
    target_predictions: [],
    token_summaries: tokens.map((token) => ({
      token, embeddings: r() - 0.5, mlp: r() - 0.5, attention_by_query: r() - 0.5, attention_by_key: r() - 0.5,
      direct_embeddings: 0, direct_mlp: 0, direct_attention_by_query: 0, direct_attention_by_key: 0,
    })),
    bias_direct_effect: 0,
  };
  return { explained: `synthetic table of ${rows} nodes`, prompts: Array(prompts).fill(prompt), nodes };
}
