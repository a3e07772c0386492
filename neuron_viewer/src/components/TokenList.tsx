/** Target / distractor token inputs: each entry shows how it tokenizes, with warnings. An entry can
 * be a list ("33, 34, 35") or a range of numbers ("33..99", zero-padded like its ends); a long list
 * scrolls in a box of a few lines instead of pushing the page down. */
import { useState } from "react";
import type { ServerInfo } from "../api/client";
import { showToken } from "../lib/color";
import { useTokens } from "../lib/useApi";
import { UNSEEN_NOTE, useKnownTokens } from "../lib/vocabulary";

/** Warnings for a target token as typed (before tokenizing), given the prompt it continues. A
 * target without a leading space continues the prompt's last word: a slip for a word after a
 * space-separated prompt (" Mary"), but right for digits after digits (" 17" + "33"). */
export function textWarnings(text: string, prompt = ""): string[] {
  const out: string[] = [];
  if (text.length === 0 || /^\s/.test(text)) return out;
  const continuesNumber = /^\d/.test(text) && /\d$/.test(prompt);
  const startsWord = /^[\p{L}\p{N}]/u.test(text);
  if (startsWord && !continuesNumber)
    out.push("no leading space: mid-word token (did you mean ' " + text + "'?)");
  return out;
}

const RANGE = /^(\s?)(\d+)\s*(?:\.\.|–)\s*(\d+)$/;

/** The entries typed in one go: a range "33..99" (or "33–99"), a comma-separated list, or one
 * token as typed (a lone "," or " ," is a token, not a list). At most `max` entries. */
export function expandEntries(text: string, max = 1000): string[] {
  const range = RANGE.exec(text);
  if (range) {
    const [, space, a, b] = range;
    const [lo, hi] = [Number(a), Number(b)].sort((x, y) => x - y);
    const width = a.length === b.length ? a.length : 0;
    const out: string[] = [];
    for (let n = lo; n <= hi && out.length < max; n++) out.push(space + String(n).padStart(width, "0"));
    return out;
  }
  if (text.includes(",") && text.trim() !== ",") {
    const parts = text.split(",").filter((p) => p.trim() !== "");
    if (parts.length > 1) return parts.slice(0, max);
  }
  return text === "" ? [] : [text];
}

function TokenChip({ text, prompt, known, onRemove }: { text: string; prompt: string; known: Set<number> | null; onRemove: () => void }) {
  const tokens = useTokens(text, 0, false);
  const warnings = textWarnings(text, prompt);
  if (tokens.status === "ok" && tokens.data.ids.length > 1)
    warnings.push(`${tokens.data.ids.length} tokens: the logit-difference loss needs single-token targets`);
  if (tokens.status === "ok" && known && tokens.data.ids.some((id) => !known.has(id)))
    warnings.push(`unseen token: ${UNSEEN_NOTE}`);
  return (
    <span className={`token-chip${warnings.length ? " warn" : ""}`} data-testid="token-chip" title={warnings.join("\n")}>
      <code>{showToken(text)}</code>
      {tokens.status === "ok" && (
        <span className="muted mono"> → [{tokens.data.tokens.map((t, i) => `${showToken(t)}:${tokens.data.ids[i]}`).join(", ")}]</span>
      )}
      {tokens.status === "error" && <span className="error-text"> {tokens.message}</span>}
      {warnings.map((w) => <span key={w} className="warning" role="note"> ⚠ {w}</span>)}
      <button type="button" aria-label={`remove ${text}`} onClick={onRemove}>×</button>
    </span>
  );
}

export function TokenList({ label, values, onChange, prompt = "", info = null, title }: {
  label: string; values: string[]; onChange: (v: string[]) => void; prompt?: string; info?: ServerInfo | null; title?: string;
}) {
  const [draft, setDraft] = useState("");
  const known = useKnownTokens(info);
  const add = () => {
    const fresh = expandEntries(draft).filter((v, i, all) => !values.includes(v) && all.indexOf(v) === i);
    if (fresh.length) onChange([...values, ...fresh]);
    setDraft("");
  };
  return (
    <div className="token-list" data-testid={`token-list-${label}`}>
      <span className="field-label" title={title}>{label}{values.length > 3 ? ` (${values.length})` : ""}</span>
      <div className={`chips${values.length > 6 ? " many" : ""}`}>
        {values.map((v) => <TokenChip key={v} text={v} prompt={prompt} known={known} onRemove={() => onChange(values.filter((x) => x !== v))} />)}
      </div>
      <input aria-label={`add ${label}`} className="mono" value={draft} placeholder="' Mary' or 33..99 (Enter)"
        title="One token (with its leading space), a comma-separated list, or a range of numbers like 33..99"
        onChange={(e) => setDraft(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter") {
            e.preventDefault();
            add();
          }
        }}
        onBlur={add} />
      {values.length > 6 && <button type="button" onClick={() => onChange([])}>clear {label}</button>}
    </div>
  );
}
