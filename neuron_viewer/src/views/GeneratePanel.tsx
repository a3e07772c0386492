/** Generation side by side (POST /generate): the prompt continued without and with the current
 * zero-ablations, and with a steering vector — α × a neuron's or latent's write direction added at
 * chosen prompt positions (all positions, generated tokens included, when none is chosen). */
import { useEffect, useMemo, useState } from "react";
import { unwrap, type ServerInfo } from "../api/client";
import { Status } from "../components/Status";
import { showToken } from "../lib/color";
import { TIPS } from "../lib/glossary";
import { describeNode, saeSite } from "../lib/nodes";
import { useClient, useLoad, useTokens } from "../lib/useApi";
import type { DebuggerState } from "../lib/urlState";
import type { components } from "../api/schema";

type GenIntervention = components["schemas"]["GenerationIntervention"];
type Component = GenIntervention["component"];

/** "L3.N412" → a neuron; "L3.mlp.F12" / "L3.attn.F12" → a latent of that layer's SAE at that site. */
export function parseComponent(text: string, info: ServerInfo | null): { component: Component | null; error: string | null } {
  const t = text.trim();
  if (t === "") return { component: null, error: null };
  const neuron = /^L(\d+)\.N(\d+)$/i.exec(t);
  if (neuron) return { component: { kind: "mlp_neuron", layer: Number(neuron[1]), index: Number(neuron[2]), sae: null }, error: null };
  const latent = /^L(\d+)\.(\w+)\.F(\d+)$/i.exec(t);
  if (latent) {
    const layer = Number(latent[1]);
    const sae = info?.saes.find((s) => s.layer === layer && saeSite(s.hook_point) === latent[2]);
    if (!sae) return { component: null, error: `no SAE at site "${latent[2]}" in layer ${layer}` };
    return { component: { kind: "sae_latent", layer, index: Number(latent[3]), sae: sae.hook_point }, error: null };
  }
  return { component: null, error: `"${t}" is not a neuron (L3.N412) or a latent (L3.mlp.F12); heads cannot be steered` };
}

/** The debugger's interventions that generation can apply (zero-ablations of neurons, heads and
 * latents, at their positions) and the rest, named. */
export function generationInterventions(state: DebuggerState): { applied: GenIntervention[]; skipped: string[] } {
  const applied: GenIntervention[] = [], skipped: string[] = [];
  for (const iv of state.interventions) {
    const n = iv.node;
    const pair = n.kind === "attn_head" && n.key_position !== null && n.key_position !== undefined;
    if (iv.mode !== "zero" || pair || !(n.kind === "mlp_neuron" || n.kind === "attn_head" || n.kind === "sae_latent") || n.position < 0) {
      skipped.push(`${iv.mode} ${describeNode(n)}`);
      continue;
    }
    applied.push({ component: { kind: n.kind, layer: n.layer ?? 0, index: n.index ?? 0, sae: n.kind === "sae_latent" ? n.sae ?? null : null },
      action: "zero", scale: 0, positions: [n.position] });
  }
  return { applied, skipped };
}

function Continuation({ title, body, testid }: { title: string; body: object | null; testid: string }) {
  const client = useClient();
  const load = useLoad(body ? JSON.stringify(body) : null,
    () => unwrap(client.POST("/api/v1/generate", { body: body as never })));
  return (
    <div className="gen-col" data-testid={testid}>
      <h4>{title}</h4>
      <Status load={load} what="generation" />
      {load.status === "ok" && <div className="mono gen-text">{load.data.completions[0].tokens.map((t, i) => <span key={i} className="tok">{showToken(t)}</span>)}</div>}
      {!body && <p className="muted">nothing to apply</p>}
    </div>
  );
}

export function GeneratePanel({ state, info, navigate }: { state: DebuggerState; info: ServerInfo | null; navigate: (s: DebuggerState) => void }) {
  // the steering node, α and positions live in the URL (steer, alpha, spos): a copied link reproduces them
  const [steerText, setSteerText] = useState(state.steer);
  useEffect(() => setSteerText(state.steer), [state.steer]);
  const [alpha, setAlphaDraft] = useState(state.alpha);
  useEffect(() => setAlphaDraft(state.alpha), [state.alpha]);
  useEffect(() => {       // α goes to the URL once the slider rests (one history entry per setting)
    if (alpha === state.alpha) return;
    const t = setTimeout(() => navigate({ ...state, alpha }), 250);
    return () => clearTimeout(t);
  }, [alpha, state, navigate]);
  const positions = state.steerPositions;
  const setPositions = (steerPositions: number[]) => navigate({ ...state, steerPositions: [...steerPositions].sort((a, b) => a - b) });
  const [tokens, setTokens] = useState(20);
  const tok = useTokens(state.prompt);
  const { applied, skipped } = useMemo(() => generationInterventions(state), [state]);
  const steer = parseComponent(state.steer, info);
  const draftError = parseComponent(steerText, info).error;
  const base = useMemo(() => ({ prompts: [state.prompt], max_new_tokens: tokens, temperature: 0 }), [state.prompt, tokens]);
  const withIvs = applied.length ? { ...base, interventions: applied } : null;
  const steered = steer.component
    ? { ...base, interventions: [{ component: steer.component, action: "steer" as const, scale: state.alpha, positions: positions.length ? positions : null }] }
    : null;
  if (!state.prompt) return <section className="panel" aria-label="generation"><p className="muted">Type a prompt first.</p></section>;
  return (
    <section className="panel" aria-label="generation">
      <div className="panel-head" title={TIPS.generate}><strong>Generate &amp; steer</strong> <span className="muted">greedy continuations of the prompt</span>{" "}
        <label>tokens <input type="number" aria-label="new tokens" min={1} max={info?.limits.max_new_tokens ?? 64} value={tokens} style={{ width: "4em" }}
          onChange={(e) => setTokens(Math.max(1, Math.min(info?.limits.max_new_tokens ?? 64, Number(e.target.value) || 1)))} /></label>
      </div>
      <div className="steer-controls">
        <label title="A neuron (L3.N412) or an SAE latent (L3.mlp.F12) whose write direction is added (Enter or leave the box to apply)">steer node{" "}
          <input aria-label="steer node" className="mono" placeholder="L3.N412" value={steerText} onChange={(e) => setSteerText(e.target.value)}
            onBlur={() => steerText !== state.steer && navigate({ ...state, steer: steerText.trim() })}
            onKeyDown={(e) => { if (e.key === "Enter") navigate({ ...state, steer: steerText.trim() }); }} /></label>
        <label title={TIPS.alpha}>α <input type="range" aria-label="steering alpha" min={-50} max={50} step={1} value={alpha}
          onChange={(e) => setAlphaDraft(Number(e.target.value))} /> <span className="mono" data-testid="alpha">{alpha}</span></label>
        {(draftError ?? steer.error) && <span className="error-text" role="note">{draftError ?? steer.error}</span>}
      </div>
      {tok.status === "ok" && (
        <div className="token-preview mono" aria-label="steering positions" title="Click tokens to steer only there; none chosen = every position">
          <span className="muted">positions: </span>
          {tok.data.tokens.map((t, i) => (
            <button type="button" key={i} className={`tok${positions.includes(i) ? " chosen" : ""}`} aria-pressed={positions.includes(i)}
              onClick={() => setPositions(positions.includes(i) ? positions.filter((p) => p !== i) : [...positions, i])}>{showToken(t)}</button>
          ))}
          <span className="muted"> {positions.length ? `${positions.length} chosen` : "all positions"}</span>
        </div>
      )}
      {skipped.length > 0 && <p className="muted">not applied in generation (it zeroes neurons, heads and latents only): {skipped.join(", ")}</p>}
      <div className="gen-grid">
        <Continuation title="without interventions" body={base} testid="gen-plain" />
        <Continuation title={`with the ${applied.length} zero-ablation${applied.length === 1 ? "" : "s"}`} body={withIvs} testid="gen-interventions" />
        <Continuation title={steer.component ? `steered: ${state.steer} × ${state.alpha}` : "steered (choose a node)"} body={steered} testid="gen-steered" />
      </div>
    </section>
  );
}
