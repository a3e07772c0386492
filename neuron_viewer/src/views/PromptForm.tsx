/** The prompt box, the optional comparison prompt, targets and distractors (with tokenization),
 * and the neuron/latent toggles. Edits are a draft until "Run" puts them in the URL. */
import { useEffect, useState } from "react";
import type { ServerInfo } from "../api/client";
import { TokenList } from "../components/TokenList";
import { showToken } from "../lib/color";
import { useTokens } from "../lib/useApi";
import { swapTargets } from "../lib/requests";
import type { DebuggerState } from "../lib/urlState";

function TokenPreview({ text }: { text: string }) {
  const tokens = useTokens(text);
  if (tokens.status === "ok")
    return (
      <div className="token-preview mono" aria-label="prompt tokens">
        {tokens.data.tokens.map((t, i) => <span key={i} className="tok" title={`${i}: id ${tokens.data.ids[i]}`}>{showToken(t)}</span>)}
        <span className="muted"> {tokens.data.ids.length} tokens</span>
      </div>
    );
  if (tokens.status === "error") return <div className="error-text">{tokens.message}</div>;
  return <div className="token-preview muted">&nbsp;</div>;
}

export function PromptForm({ state, info, onRun }: { state: DebuggerState; info: ServerInfo | null; onRun: (s: DebuggerState) => void }) {
  const [draft, setDraft] = useState(state);
  const [compare, setCompare] = useState(state.prompt2 !== "");
  useEffect(() => {
    setDraft(state);
    setCompare(state.prompt2 !== "");
  }, [state]);
  const hasMlpSae = info?.saes.some((s) => s.hook_point.includes("mlp")) ?? false;
  const hasAttnSae = info?.saes.some((s) => s.hook_point.includes("attn")) ?? false;
  const run = () => onRun({ ...draft, prompt2: compare ? draft.prompt2 : "" });
  return (
    <form className="prompt-form" onSubmit={(e) => { e.preventDefault(); run(); }}>
      <label className="field-label" htmlFor="prompt">prompt</label>
      <textarea id="prompt" aria-label="prompt" className="mono" rows={2} value={draft.prompt}
        onChange={(e) => setDraft({ ...draft, prompt: e.target.value })}
        onKeyDown={(e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } }} />
      <TokenPreview text={draft.prompt} />
      <label className="chip"><input type="checkbox" checked={compare} onChange={(e) => setCompare(e.target.checked)} />compare with a second prompt</label>
      {compare && (
        <>
          <textarea aria-label="second prompt" className="mono" rows={2} value={draft.prompt2}
            onChange={(e) => setDraft({ ...draft, prompt2: e.target.value })} />
          <TokenPreview text={draft.prompt2} />
        </>
      )}
      <div className="targets">
        <TokenList label="targets" values={draft.targets} onChange={(targets) => setDraft({ ...draft, targets })} />
        <button type="button" title="swap targets and distractors" onClick={() => setDraft(swapTargets(draft))}>⇅ swap</button>
        <TokenList label="distractors" values={draft.distractors} onChange={(distractors) => setDraft({ ...draft, distractors })} />
      </div>
      <div className="toggles">
        <label className="chip" title={hasMlpSae ? "" : "the server has no MLP SAE"}>
          <input type="checkbox" disabled={!hasMlpSae} checked={draft.mlp === "latents"}
            onChange={(e) => setDraft({ ...draft, mlp: e.target.checked ? "latents" : "neurons" })} />MLP latents (not neurons)
        </label>
        <label className="chip" title={hasAttnSae ? "" : "the server has no attention SAE"}>
          <input type="checkbox" disabled={!hasAttnSae} checked={draft.attention === "latents"}
            onChange={(e) => setDraft({ ...draft, attention: e.target.checked ? "latents" : "heads" })} />attention latents (not heads)
        </label>
        <label>top-k <input type="number" min={1} max={info?.limits.max_top_k ?? 200} value={draft.topK} style={{ width: "4em" }}
          onChange={(e) => setDraft({ ...draft, topK: Math.max(1, Number(e.target.value) || 1) })} /></label>
        <button type="submit" className="primary">Run</button>
      </div>
    </form>
  );
}
