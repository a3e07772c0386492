/** The attribution graph of the prompt as SVG: layers left to right, edges weighted by |weight|
 * (red positive, blue negative); clicking a node opens its page (or filters the table). */
import { useMemo } from "react";
import { unwrap, type GraphResult } from "../api/client";
import { formatNumber } from "../lib/color";
import { lossSpec } from "../lib/requests";
import { useClient, useLoad } from "../lib/useApi";
import type { DebuggerState, NodeAddress } from "../lib/urlState";
import { Status } from "../components/Status";

type Graph = GraphResult;
export interface Placed { id: string; x: number; y: number; node: Graph["nodes"][number] }

/** Positions: x by layer (embeddings first, the loss last), y by order of |effect| within a layer. */
export function layoutGraph(graph: Graph, width: number, height: number): Map<string, Placed> {
  const byLayer = new Map<number, Graph["nodes"]>();
  for (const n of graph.nodes) {
    const l = n.layer ?? -1;
    byLayer.set(l, [...(byLayer.get(l) ?? []), n]);
  }
  const layers = [...byLayer.keys()].sort((a, b) => a - b);
  const out = new Map<string, Placed>();
  layers.forEach((l, i) => {
    const nodes = byLayer.get(l)!.slice().sort((a, b) => Math.abs(b.total_effect) - Math.abs(a.total_effect));
    const x = layers.length === 1 ? width / 2 : 60 + (i * (width - 120)) / (layers.length - 1);
    nodes.forEach((n, j) => out.set(n.id, { id: n.id, node: n, x, y: 30 + ((j + 0.5) * (height - 60)) / nodes.length }));
  });
  return out;
}

export function GraphPanel({ state, openNode }: { state: DebuggerState; navigate: (s: DebuggerState) => void; openNode: (n: NodeAddress) => void }) {
  const client = useClient();
  const body = useMemo(() => ({ prompt: state.prompt, loss: lossSpec(state), mlp: state.mlp, attention: state.attention }), [state]);
  const graph = useLoad(state.prompt ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/graph", { body })));
  const width = 900, height = 420;
  return (
    <section className="panel" aria-label="circuit graph">
      <div className="panel-head"><strong>Circuit graph</strong> <span className="muted">of the first prompt; edge width ∝ |weight|</span></div>
      <Status load={graph} what="graph" />
      {graph.status === "ok" && (() => {
        const placed = layoutGraph(graph.data, width, height);
        const maxW = Math.max(1e-12, ...graph.data.edges.map((e) => Math.abs(e.weight)));
        return (
          <svg className="graph" viewBox={`0 0 ${width} ${height}`} width="100%" role="img" aria-label="attribution graph">
            {graph.data.edges.map((e, i) => {
              const a = placed.get(e.source), b = placed.get(e.target);
              if (!a || !b) return null;
              return <line key={i} x1={a.x} y1={a.y} x2={b.x} y2={b.y} stroke={e.weight >= 0 ? "#d62728" : "#1f77b4"}
                strokeOpacity={0.25 + 0.6 * Math.abs(e.weight) / maxW} strokeWidth={0.5 + 5 * Math.abs(e.weight) / maxW}>
                <title>{`${e.source} → ${e.target}: ${formatNumber(e.weight)}`}</title></line>;
            })}
            {[...placed.values()].map(({ id, x, y, node }) => {
              const pageable = node.kind === "mlp_neuron" || node.kind === "attn_head" || node.kind === "sae_latent";
              return (
                <g key={id} transform={`translate(${x},${y})`} className={pageable ? "graph-node link" : "graph-node"} data-node={id}
                  onClick={() => pageable && openNode({ kind: node.kind as NodeAddress["kind"], layer: node.layer ?? 0, index: node.index ?? 0, sae: node.sae ?? null })}>
                  <circle r={6} fill={node.total_effect >= 0 ? "#d62728" : "#1f77b4"} />
                  <text x={9} y={4} fontSize={11}>{node.label}</text>
                  <title>{`${node.label}: total effect ${formatNumber(node.total_effect)}`}</title>
                </g>
              );
            })}
          </svg>
        );
      })()}
    </section>
  );
}
