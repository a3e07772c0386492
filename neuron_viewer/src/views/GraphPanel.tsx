/** The attribution graph of the prompt as SVG: layers left to right, edges weighted by |weight|
 * (red positive, blue negative); clicking a node opens its page (or filters the table). */
import { useEffect, useMemo, useRef, useState } from "react";
import { unwrap, type GraphResult } from "../api/client";
import { formatNumber } from "../lib/color";
import { TIPS } from "../lib/glossary";
import { componentLabel } from "../lib/nodes";
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

/** A graph node's label: the component as the node table names it (so two SAEs' latents differ),
 * and its token position. */
export function graphLabel(node: Graph["nodes"][number], tokens: string[]): string {
  const pos = node.position ?? 0;
  const at = node.kind === "loss" ? "" : ` @${pos} ${JSON.stringify(tokens[pos] ?? "")}`;
  if (node.kind === "attn_head" || node.kind === "mlp_neuron" || node.kind === "sae_latent" || node.kind === "sae_error")
    return `${componentLabel({ kind: node.kind, layer: node.layer ?? null, index: node.index ?? 0, sae: node.sae ?? null })}${at}`;
  return `${node.label}${at}`;
}

function download(name: string, blob: Blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** The drawn SVG as a standalone file (inline styles only, so it opens anywhere). */
export function svgText(svg: SVGSVGElement): string {
  const copy = svg.cloneNode(true) as SVGSVGElement;
  copy.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  copy.setAttribute("font-family", "sans-serif");
  return new XMLSerializer().serializeToString(copy);
}

function exportPng(svg: SVGSVGElement, width: number, height: number) {
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = width * 2;
    canvas.height = height * 2;
    const ctx = canvas.getContext("2d")!;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((b) => b && download("mechscope-graph.png", b), "image/png");
  };
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svgText(svg))}`;
}

function Legend() {
  return (
    <div className="graph-legend muted" data-testid="graph-legend">
      <span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="#d62728" /></svg> node raises the objective (estimated total effect &gt; 0)</span>
      <span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="#1f77b4" /></svg> node lowers it</span>
      <span><svg width="24" height="10"><line x1="0" y1="5" x2="24" y2="5" stroke="#d62728" strokeWidth="4" /></svg> edge: the source raises the target (width ∝ |weight|)</span>
      <span><svg width="24" height="10"><line x1="0" y1="5" x2="24" y2="5" stroke="#1f77b4" strokeWidth="1.5" /></svg> edge: lowers it</span>
      <span>layers left to right: embeddings, blocks, the objective; click a node to open its page</span>
    </div>
  );
}

export function GraphPanel({ state, navigate, openNode }: { state: DebuggerState; navigate: (s: DebuggerState) => void; openNode: (n: NodeAddress) => void }) {
  const client = useClient();
  const body = useMemo(() => ({ prompt: state.prompt, loss: lossSpec(state), mlp: state.mlp, attention: state.attention,
    max_nodes: state.graphNodes, max_edges: state.graphEdges }), [state]);
  const graph = useLoad(state.prompt ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/graph", { body })));
  const svgRef = useRef<SVGSVGElement>(null);
  const [budget, setBudget] = useState({ nodes: state.graphNodes, edges: state.graphEdges });
  useEffect(() => setBudget({ nodes: state.graphNodes, edges: state.graphEdges }), [state.graphNodes, state.graphEdges]);
  const width = 1000, height = 460;
  return (
    <section className="panel" aria-label="circuit graph">
      <div className="panel-head"><strong>Circuit graph</strong> <span className="muted">of the first prompt</span></div>
      <form className="graph-controls" onSubmit={(e) => { e.preventDefault(); navigate({ ...state, graphNodes: budget.nodes, graphEdges: budget.edges }); }}>
        <label title={TIPS.maxNodes}>nodes <input type="number" aria-label="node budget" min={1} max={200} value={budget.nodes} style={{ width: "4.5em" }}
          onChange={(e) => setBudget({ ...budget, nodes: Math.min(200, Math.max(1, Number(e.target.value) || 1)) })} /></label>
        <label title={TIPS.maxEdges}>edges <input type="number" aria-label="edge budget" min={1} max={1000} value={budget.edges} style={{ width: "5em" }}
          onChange={(e) => setBudget({ ...budget, edges: Math.min(1000, Math.max(1, Number(e.target.value) || 1)) })} /></label>
        <button type="submit">redraw</button>
        <span className="spacer" />
        <button type="button" disabled={graph.status !== "ok"} onClick={() => svgRef.current && download("mechscope-graph.svg", new Blob([svgText(svgRef.current)], { type: "image/svg+xml" }))}>export SVG</button>
        <button type="button" disabled={graph.status !== "ok"} onClick={() => svgRef.current && exportPng(svgRef.current, width, height)}>export PNG</button>
        <button type="button" disabled={graph.status !== "ok"} onClick={() => graph.status === "ok" && download("mechscope-graph.json",
          new Blob([JSON.stringify({ request: body, graph: graph.data }, null, 2)], { type: "application/json" }))}>export JSON</button>
      </form>
      <Legend />
      <Status load={graph} what="graph" />
      {graph.status === "ok" && (() => {
        const placed = layoutGraph(graph.data, width, height);
        const maxW = Math.max(1e-12, ...graph.data.edges.map((e) => Math.abs(e.weight)));
        return (
          <svg ref={svgRef} className="graph" viewBox={`0 0 ${width} ${height}`} width="100%" role="img" aria-label="attribution graph">
            <rect width={width} height={height} fill="#fff" />
            {graph.data.edges.map((e, i) => {
              const a = placed.get(e.source), b = placed.get(e.target);
              if (!a || !b) return null;
              return <line key={i} x1={a.x} y1={a.y} x2={b.x} y2={b.y} stroke={e.weight >= 0 ? "#d62728" : "#1f77b4"}
                strokeOpacity={0.25 + 0.6 * Math.abs(e.weight) / maxW} strokeWidth={0.5 + 5 * Math.abs(e.weight) / maxW}>
                <title>{`${e.source} → ${e.target}: ${formatNumber(e.weight)}`}</title></line>;
            })}
            {[...placed.values()].map(({ id, x, y, node }) => {
              const pageable = node.kind === "mlp_neuron" || node.kind === "attn_head" || node.kind === "sae_latent";
              const label = graphLabel(node, graph.data.tokens);
              return (
                <g key={id} transform={`translate(${x},${y})`} className={pageable ? "graph-node link" : "graph-node"} data-node={id}
                  onClick={() => pageable && openNode({ kind: node.kind as NodeAddress["kind"], layer: node.layer ?? 0, index: node.index ?? 0, sae: node.sae ?? null })}>
                  <circle r={6} fill={node.total_effect >= 0 ? "#d62728" : "#1f77b4"} />
                  <text x={9} y={4} fontSize={10}>{label}</text>
                  <title>{`${label}: estimated total effect ${formatNumber(node.total_effect)}${pageable ? " (click: open its page)" : ""}`}</title>
                </g>
              );
            })}
          </svg>
        );
      })()}
    </section>
  );
}
