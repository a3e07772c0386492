/** A node's page: top-activating examples with per-token heatmaps (token pairs for heads), random
 * and quantile samples, histogram, promoted / suppressed tokens, live activations on the user's
 * prompts, previous / next node and layer (buttons and arrow keys). */
import { useEffect, useMemo, useState } from "react";
import { unwrap, type ServerInfo } from "../api/client";
import { TokenHeatmap } from "../components/TokenHeatmap";
import { formatNumber, showToken } from "../lib/color";
import { readPage, triangleRow, type ExampleWindow, type HistogramData, type TokenEffect } from "../lib/nodePage";
import { useClient, useLoad } from "../lib/useApi";
import type { NodeAddress } from "../lib/urlState";
import { Status } from "../components/Status";
import { NodeExplanations } from "./NodeExplanations";

/** Layers one can move through: the model's, or for a latent only its own SAE's layer. */
function n_layers(n: NodeAddress, info: ServerInfo | null): number | null {
  if (!info) return null;
  return n.kind === "sae_latent" ? n.layer + 1 : info.model.n_layer;
}

export function nodeTitle(n: NodeAddress): string {
  const what = n.kind === "attn_head" ? `head ${n.index}` : n.kind === "mlp_neuron" ? `neuron ${n.index}` : `latent ${n.index}`;
  return `layer ${n.layer} ${what}${n.sae ? ` (${n.sae})` : ""}`;
}

/** How many components of the node's kind a layer has (null when the server info is not known). */
export function componentCount(n: NodeAddress, info: ServerInfo | null): number | null {
  if (!info) return null;
  if (n.kind === "attn_head") return info.model.n_head;
  if (n.kind === "mlp_neuron") return info.model.d_mlp;
  return info.saes.find((s) => s.hook_point === n.sae)?.n_latents ?? null;
}

/** The node a navigation key leads to (ArrowLeft/Right: index, ArrowUp/Down: layer), or null at the edges. */
export function navigateKey(n: NodeAddress, key: string, layers: number | null, count: number | null = null): NodeAddress | null {
  if (key === "ArrowRight") return count === null || n.index + 1 < count ? { ...n, index: n.index + 1 } : null;
  if (key === "ArrowLeft") return n.index > 0 ? { ...n, index: n.index - 1 } : null;
  if (key === "ArrowDown") return layers === null || n.layer + 1 < layers ? { ...n, layer: n.layer + 1 } : null;
  if (key === "ArrowUp") return n.layer > 0 ? { ...n, layer: n.layer - 1 } : null;
  return null;
}

/** What a head's numbers are, said once on its page (the node table's "act" for a head pair is the
 * attention probability; datasets and these heatmaps use the write norm unless told otherwise). */
export const HEAD_VALUE_NAMES = {
  write_norm: "write norm",
  attention_prob: "attention probability",
} as const;
export const HEAD_VALUE_TIPS = {
  write_norm: "write norm ‖p·v_k W_O‖: the attention probability times the norm of what the key's value writes (TDB's attn_write_norm)",
  attention_prob: "attention probability p(query → key) (the node table's act for a head pair)",
} as const;

function Examples({ title, windows, tokenPair }: { title: string; windows: ExampleWindow[]; tokenPair: boolean }) {
  if (windows.length === 0) return null;
  const scale = Math.max(1e-12, ...windows.map((w) => w.max_activation));
  return (
    <section className="examples" aria-label={title}>
      <h3>{title}</h3>
      {tokenPair && <p className="muted" data-testid="head-value-note">values: {HEAD_VALUE_TIPS.write_norm}; a token's value is its largest over keys, examples are ranked by it. Hover a token to see its write norm to each earlier token.</p>}
      {windows.map((w, i) => (
        <div key={i} className="example">
          <span className="muted mono max">{formatNumber(w.max_activation, 2)}</span>
          <TokenHeatmap tokens={w.tokens} values={w.activations} scale={scale} highlight={w.max_position ?? null}
            pairRow={tokenPair && w.token_pair_activations ? (q) => triangleRow(w.token_pair_activations!, q) : undefined}
            valueName={tokenPair ? "write norm (max over keys)" : "activation"} pairName={HEAD_VALUE_NAMES.write_norm} />
        </div>
      ))}
    </section>
  );
}

function Histogram({ h }: { h: HistogramData }) {
  const max = Math.max(1, ...h.counts);
  const w = 360, height = 80, bw = w / Math.max(1, h.counts.length);
  return (
    <figure className="histogram">
      <svg width={w} height={height + 14} role="img" aria-label="activation histogram">
        {h.counts.map((c, i) => (
          <rect key={i} x={i * bw} y={height - (height * Math.log1p(c)) / Math.log1p(max)} width={Math.max(1, bw - 1)}
            height={(height * Math.log1p(c)) / Math.log1p(max)} fill="#ff7f0e">
            <title>{`[${formatNumber(h.edges[i])}, ${formatNumber(h.edges[i + 1])}): ${c}`}</title>
          </rect>
        ))}
        <text x={0} y={height + 12} fontSize={10}>{formatNumber(h.edges[0], 2)}</text>
        <text x={w} y={height + 12} fontSize={10} textAnchor="end">{formatNumber(h.edges[h.edges.length - 1], 2)}</text>
      </svg>
      <figcaption className="muted">histogram (log counts){h.underflow || h.overflow ? `; below ${h.underflow ?? 0}, above ${h.overflow ?? 0}` : ""}</figcaption>
    </figure>
  );
}

function Effects({ title, effects }: { title: string; effects: TokenEffect[] }) {
  if (!effects.length) return null;
  return (
    <table className="dense" aria-label={title}>
      <caption>{title}</caption>
      <tbody>{effects.map((e) => <tr key={e.token_id}><td className="mono">{showToken(e.token)}</td><td className="num mono">{formatNumber(e.value)}</td></tr>)}</tbody>
    </table>
  );
}

function LiveActivations({ node, prompts }: { node: NodeAddress; prompts: string[] }) {
  const client = useClient();
  const [headValue, setHeadValue] = useState<keyof typeof HEAD_VALUE_NAMES>("write_norm");
  const body = useMemo(() => ({
    component: { kind: node.kind, layer: node.layer, index: node.index, sae: node.kind === "sae_latent" ? node.sae : null },
    prompts, head_value: headValue,
  }), [node, prompts, headValue]);
  const live = useLoad(prompts.length ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/nodes/activations", { body })));
  if (!prompts.length) return <p className="muted">Type a prompt in the debugger to see this node's activations on it.</p>;
  return (
    <section aria-label="live activations">
      <h3>On your prompts</h3>
      {node.kind === "attn_head" && (
        <p className="muted">
          <select aria-label="head value" value={headValue} onChange={(e) => setHeadValue(e.target.value as keyof typeof HEAD_VALUE_NAMES)}
            title={HEAD_VALUE_TIPS[headValue]}>
            {(Object.keys(HEAD_VALUE_NAMES) as (keyof typeof HEAD_VALUE_NAMES)[]).map((k) => <option key={k} value={k}>{HEAD_VALUE_NAMES[k]}</option>)}
          </select>{" "}
          <span data-testid="live-head-note">{HEAD_VALUE_TIPS[headValue]}. Each query token shows its largest {HEAD_VALUE_NAMES[headValue]} over keys; hover a token to see its {HEAD_VALUE_NAMES[headValue]} to each key.</span>
        </p>
      )}
      <Status load={live} what="activations" />
      {live.status === "ok" && live.data.prompts.map((p, i) => {
        const values = p.values ?? (p.matrix ?? []).map((row) => Math.max(0, ...row));
        return (
          <div key={i} className="example">
            <TokenHeatmap tokens={p.tokens} values={values} scale={Math.max(1e-12, live.data.max_value)}
              pairRow={p.matrix ? (q) => p.matrix![q] ?? null : undefined}
              valueName={node.kind === "attn_head" ? `${HEAD_VALUE_NAMES[headValue]} (max over keys)` : "activation"}
              pairName={HEAD_VALUE_NAMES[headValue]} />
          </div>
        );
      })}
    </section>
  );
}

export function NodePageView({ node, prompts, info, go, back }: {
  node: NodeAddress; prompts: string[]; info: ServerInfo | null; go: (n: NodeAddress) => void; back: () => void;
}) {
  const client = useClient();
  const key = `${node.kind}/${node.layer}/${node.index}/${node.sae ?? ""}`;
  const page = useLoad(key, () => unwrap(client.GET("/api/v1/nodes/{kind}/{layer}/{index}", {
    params: { path: { kind: node.kind, layer: node.layer, index: node.index }, query: node.sae ? { sae: node.sae } : {} },
  })));
  const paged = node.kind !== "attn_head";
  const writes = useLoad(paged ? `w:${key}` : null, () => unwrap(client.POST("/api/v1/write-tokens", {
    body: { node: { kind: node.kind, layer: node.layer, index: node.index, position: -1, sae: node.sae }, k: 10 },
  })));
  const layers = n_layers(node, info);
  const count = componentCount(node, info);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
      const next = navigateKey(node, e.key, layers, count);
      if (next) {
        e.preventDefault();
        go(next);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [node, layers, count, go]);
  const data = page.status === "ok" ? readPage(page.data.data) : null;
  const nav = (arrow: string, label: string) => {
    const next = navigateKey(node, arrow, layers, count);
    return <button disabled={!next} onClick={() => next && go(next)} title={arrow}>{label}</button>;
  };
  return (
    <div className="node-page">
      <div className="node-head">
        <button onClick={back}>← debugger</button>
        <h2 className="mono" data-testid="node-title">{nodeTitle(node)}</h2>
        {nav("ArrowLeft", "◀ prev node")}{nav("ArrowRight", "next node ▶")}{nav("ArrowUp", "▲ prev layer")}{nav("ArrowDown", "next layer ▼")}
        <span className="muted">(arrow keys)</span>
      </div>
      <NodeExplanations node={node} />
      {page.status === "loading" && <div className="loading" role="status">Loading the node page…</div>}
      {page.status === "error" && (
        <div className="notice" role="alert" data-testid="no-dataset">
          {page.httpStatus === 404 ? <strong>No dataset example for this node. </strong> : <strong>Could not load the node page: </strong>}
          {page.message}
        </div>
      )}
      {data && (
        <div className="node-body">
          <div className="node-side">
            <table className="dense" aria-label="statistics"><caption>statistics ({page.status === "ok" && page.data.dataset})</caption>
              <tbody>{Object.entries(data.stats).map(([k, v]) => <tr key={k}><td>{k}</td><td className="num mono">{formatNumber(v)}</td></tr>)}</tbody>
            </table>
            {data.histogram && <Histogram h={data.histogram} />}
            <Effects title="promoted tokens" effects={data.promoted_tokens} />
            <Effects title="suppressed tokens" effects={data.suppressed_tokens} />
          </div>
          <div className="node-main">
            <Examples title="top-activating examples" windows={data.top_examples} tokenPair={node.kind === "attn_head"} />
            <Examples title="random sample" windows={data.random_sample} tokenPair={node.kind === "attn_head"} />
            {data.quantile_samples?.map((q, i) => (
              <Examples key={i} tokenPair={node.kind === "attn_head"} windows={q}
                title={`quantile ${i + 1}${data.quantile_boundaries ? ` (from ${formatNumber(data.quantile_boundaries[i - 1] ?? null)})` : ""}`} />
            ))}
          </div>
        </div>
      )}
      {writes.status === "ok" && (!data || data.promoted_tokens.length === 0) && (
        <div className="node-side">
          <Effects title="promoted tokens (write direction)" effects={writes.data.promoted} />
          <Effects title="suppressed tokens (write direction)" effects={writes.data.suppressed} />
        </div>
      )}
      <LiveActivations node={node} prompts={prompts} />
    </div>
  );
}
