/** Explanations of nodes (GET/POST /api/v1/explanations...): node keys, batch lookup for the node
 * table's rows, score formatting. */
import type { NodeRow, Schemas } from "../api/client";
import type { NodeAddress } from "./urlState";

export type ExplanationBrief = Schemas["ExplanationBrief"];
export type ExplanationModel = Schemas["ExplanationModel"];
export type NodeExplanations = Schemas["NodeExplanations"];
export type ExplanationHit = Schemas["ExplanationHit"];
type LookupNode = Schemas["ExplanationNode"];

const EXPLAINED = new Set(["mlp_neuron", "attn_head", "sae_latent"]);

/** The server's key of a node's explanations: kind:layer:index, or sae_latent:<hook point>:index. */
export function explanationKey(n: { kind: string; layer?: number | null; index: number; sae?: string | null }): string | null {
  if (!EXPLAINED.has(n.kind)) return null;
  if (n.kind === "sae_latent") return n.sae ? `sae_latent:${n.sae}:${n.index}` : null;
  return n.layer === null || n.layer === undefined ? null : `${n.kind}:${n.layer}:${n.index}`;
}

/** The distinct explainable nodes of the table's rows, in a stable order (the lookup's body). */
export function lookupNodes(rows: NodeRow[]): LookupNode[] {
  const seen = new Map<string, LookupNode>();
  for (const r of rows) {
    const key = explanationKey(r);
    if (key && !seen.has(key)) {
      seen.set(key, { kind: r.kind as LookupNode["kind"], layer: r.layer, index: r.index, sae: r.sae ?? null });
    }
  }
  return [...seen.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, n]) => n);
}

export function formatScore(score: number | null | undefined): string {
  return score === null || score === undefined ? "–" : score.toFixed(2);
}

export function hitAddress(hit: ExplanationHit): NodeAddress {
  return { kind: hit.kind as NodeAddress["kind"], layer: hit.layer ?? 0, index: hit.index, sae: hit.sae ?? null };
}
