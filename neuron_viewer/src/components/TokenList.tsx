/** Target / distractor token inputs: each entry shows how it tokenizes, with warnings. */
import { useState } from "react";
import { showToken } from "../lib/color";
import { useTokens } from "../lib/useApi";

/** Warnings for a target token as typed (before tokenizing). */
export function textWarnings(text: string): string[] {
  const out: string[] = [];
  if (text.length > 0 && !/^\s/.test(text)) out.push("no leading space: mid-word token (did you mean ' " + text + "'?)");
  return out;
}

function TokenChip({ text, onRemove }: { text: string; onRemove: () => void }) {
  const tokens = useTokens(text, 0, false);
  const warnings = textWarnings(text);
  if (tokens.status === "ok" && tokens.data.ids.length > 1)
    warnings.push(`${tokens.data.ids.length} tokens: the logit-difference loss needs single-token targets`);
  return (
    <span className={`token-chip${warnings.length ? " warn" : ""}`} data-testid="token-chip">
      <code>{showToken(text)}</code>
      {tokens.status === "ok" && (
        <span className="muted mono"> → [{tokens.data.tokens.map((t, i) => `${showToken(t)}:${tokens.data.ids[i]}`).join(", ")}]</span>
      )}
      {tokens.status === "error" && <span className="error-text"> {tokens.message}</span>}
      {warnings.map((w) => <span key={w} className="warning" role="note"> ⚠ {w}</span>)}
      <button aria-label={`remove ${text}`} onClick={onRemove}>×</button>
    </span>
  );
}

export function TokenList({ label, values, onChange }: { label: string; values: string[]; onChange: (v: string[]) => void }) {
  const [draft, setDraft] = useState("");
  const add = () => {
    if (draft !== "" && !values.includes(draft)) onChange([...values, draft]);
    setDraft("");
  };
  return (
    <div className="token-list">
      <span className="field-label">{label}</span>
      {values.map((v) => <TokenChip key={v} text={v} onRemove={() => onChange(values.filter((x) => x !== v))} />)}
      <input aria-label={`add ${label}`} className="mono" value={draft} placeholder="' Mary' (Enter)"
        onChange={(e) => setDraft(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter") {
            e.preventDefault();
            add();
          }
        }}
        onBlur={add} />
    </div>
  );
}
