/** The prompt box, the optional comparison prompt, targets and distractors (with tokenization),
 * and the neuron/latent toggles. Edits are a draft until "Run" puts them in the URL. */
import { useEffect, useState } from "react";
import type { ServerInfo } from "../api/client";
import { TokenList } from "../components/TokenList";
import { showToken } from "../lib/color";
import { useTokens } from "../lib/useApi";
import { TIPS } from "../lib/glossary";
import { unseenPositions, unseenWarning, UNSEEN_NOTE, useKnownTokens } from "../lib/vocabulary";
import { lossSpec, swapTargets } from "../lib/requests";
import { MAX_EXACT_TOP_N, type DebuggerState } from "../lib/urlState";
import { EstimateControls } from "../components/EstimateControls";

function TokenPreview({ text, info, label }: { text: string; info: ServerInfo | null; label: string }) {
  const tokens = useTokens(text);
  const known = useKnownTokens(info);
  if (tokens.status === "ok") {
    const { ids } = tokens.data;
    const limit = info?.limits.max_prompt_tokens;
    const unseen = new Set(unseenPositions(ids, known));
    const warning = unseenWarning(tokens.data.tokens, known, ids);
    return (
      <div className="token-preview-box">
        <div className="token-preview mono" aria-label={label}>
          {tokens.data.tokens.map((t, i) => (
            <span key={i} className={`tok${unseen.has(i) ? " unseen" : ""}`}
              title={`${i}: id ${ids[i]}${unseen.has(i) ? ` — ${UNSEEN_NOTE}` : ""}`}>{showToken(t)}</span>
          ))}
        </div>
        <span className="muted mono" data-testid="token-count"> {ids.length} tokens</span>
        {limit !== undefined && ids.length > limit && (
          <div className="warning" role="note" data-testid="too-long">⚠ {ids.length} tokens: over the server's limit of {limit} (max_prompt_tokens); shorten the prompt</div>
        )}
        {warning && <div className="warning" role="note" data-testid="unseen-warning">⚠ {warning}</div>}
      </div>
    );
  }
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
  const [problem, setProblem] = useState<string | null>(null);
  const run = () => {
    if (draft.prompt.trim() === "") return setProblem("Type a prompt first: the prompt is empty.");
    if (compare && draft.prompt2.trim() === "") return setProblem("Type the second prompt, or untick \"compare with a second prompt\".");
    setProblem(null);
    onRun({ ...draft, prompt2: compare ? draft.prompt2 : "" });
  };
  return (
    <form className="prompt-form" onSubmit={(e) => { e.preventDefault(); run(); }}>
      <label className="field-label" htmlFor="prompt" title={TIPS.prompt}>prompt</label>
      <textarea id="prompt" aria-label="prompt" className="mono" rows={2} value={draft.prompt}
        onChange={(e) => setDraft({ ...draft, prompt: e.target.value })}
        onKeyDown={(e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } }} />
      <TokenPreview text={draft.prompt} info={info} label="prompt tokens" />
      <label className="chip" title={TIPS.prompt2}><input type="checkbox" checked={compare} onChange={(e) => setCompare(e.target.checked)} />compare with a second prompt</label>
      {compare && (
        <>
          <textarea aria-label="second prompt" className="mono" rows={2} value={draft.prompt2}
            onChange={(e) => setDraft({ ...draft, prompt2: e.target.value })} />
          <TokenPreview text={draft.prompt2} info={info} label="second prompt tokens" />
        </>
      )}
      <div className="targets">
        <TokenList label="targets" values={draft.targets} onChange={(targets) => setDraft({ ...draft, targets })}
          prompt={draft.prompt} info={info} title={TIPS.targets} />
        <button type="button" title={TIPS.swap} onClick={() => setDraft(swapTargets(draft))}>⇅ swap</button>
        <TokenList label="distractors" values={draft.distractors} onChange={(distractors) => setDraft({ ...draft, distractors })}
          prompt={draft.prompt} info={info} title={TIPS.distractors} />
      </div>
      <EstimateControls options={draft} loss={lossSpec(draft)} trace={draft.trace}
        maxExact={Math.min(MAX_EXACT_TOP_N, info?.limits.max_top_k ?? MAX_EXACT_TOP_N)}
        onChange={(patch) => setDraft({ ...draft, ...patch })} />
      <div className="toggles">
        <label className="chip" title={hasMlpSae ? TIPS.mlpLatents : "the server has no MLP SAE"}>
          <input type="checkbox" disabled={!hasMlpSae} checked={draft.mlp === "latents"}
            onChange={(e) => setDraft({ ...draft, mlp: e.target.checked ? "latents" : "neurons" })} />MLP latents (not neurons)
        </label>
        <label className="chip" title={hasAttnSae ? TIPS.attnLatents : "the server has no attention SAE"}>
          <input type="checkbox" disabled={!hasAttnSae} checked={draft.attention === "latents"}
            onChange={(e) => setDraft({ ...draft, attention: e.target.checked ? "latents" : "heads" })} />attention latents (not heads)
        </label>
        <label title={TIPS.topK}>top-k <input type="number" min={1} max={info?.limits.max_top_k ?? 200} value={draft.topK} style={{ width: "4em" }}
          onChange={(e) => setDraft({ ...draft, topK: Math.max(1, Number(e.target.value) || 1) })} /></label>
        <button type="submit" className="primary" title={TIPS.run}>Run</button>
      </div>
      {problem && <div className="error-box" role="alert" data-testid="form-problem">{problem}</div>}
    </form>
  );
}
