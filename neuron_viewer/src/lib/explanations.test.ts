import { describe, expect, it } from "vitest";
import type { NodeRow } from "../api/client";
import { explanationKey, formatScore, lookupNodes } from "./explanations";

const row = (kind: NodeRow["kind"], layer: number | null, index: number, sae: string | null = null): NodeRow =>
  ({ key: `${kind}${layer}${index}`, kind, layer, index, sae, positions: [0], values: [null] }) as NodeRow;

describe("explanation keys", () => {
  it("match the server's NodeKey strings", () => {
    expect(explanationKey(row("mlp_neuron", 2, 17))).toBe("mlp_neuron:2:17");
    expect(explanationKey(row("attn_head", 0, 3))).toBe("attn_head:0:3");
    expect(explanationKey(row("sae_latent", 1, 5, "blocks.1.hook_mlp_out"))).toBe("sae_latent:blocks.1.hook_mlp_out:5");
    expect(explanationKey(row("embedding", null, 0))).toBeNull();
    expect(explanationKey(row("sae_error", 1, 0, "blocks.1.hook_mlp_out"))).toBeNull();
  });

  it("look up each explainable node once, in a stable order", () => {
    const rows = [row("mlp_neuron", 1, 2), row("embedding", null, 0), row("mlp_neuron", 1, 2), row("attn_head", 0, 1)];
    expect(lookupNodes(rows)).toEqual([
      { kind: "attn_head", layer: 0, index: 1, sae: null },
      { kind: "mlp_neuron", layer: 1, index: 2, sae: null },
    ]);
    expect(formatScore(null)).toBe("–");
    expect(formatScore(0.456)).toBe("0.46");
  });
});
