/** Path patching (POST /patching/path): sender heads' effect on the objective only through the
 * receiver heads' q / k / v inputs (or straight to the logits); clean = the prompt, corrupted = the
 * second prompt. Heads are typed as "L1.H2, L0.H3". */
import { useEffect, useMemo, useState } from "react";
import { unwrap, type ServerInfo } from "../api/client";
import { Status } from "../components/Status";
import { formatNumber } from "../lib/color";
import { TIPS } from "../lib/glossary";
import { lossSpec } from "../lib/requests";
import { useClient, useLoad } from "../lib/useApi";
import type { DebuggerState } from "../lib/urlState";

/** "L1.H2, L0.H3" → [[1, 2], [0, 3]]; an error naming the first part that is not a head. */
export function parseHeads(text: string, layers?: number, heads?: number): { heads: [number, number][]; error: string | null } {
  const out: [number, number][] = [];
  for (const part of text.split(/[\s,;]+/).filter(Boolean)) {
    const m = /^L(\d+)\.?H(\d+)$/i.exec(part);
    if (!m) return { heads: out, error: `"${part}" is not a head (write L<layer>.H<head>, e.g. L1.H2)` };
    const [l, h] = [Number(m[1]), Number(m[2])];
    if (layers !== undefined && l >= layers) return { heads: out, error: `${part}: the model has ${layers} layers` };
    if (heads !== undefined && h >= heads) return { heads: out, error: `${part}: a layer has ${heads} heads` };
    out.push([l, h]);
  }
  return { heads: out, error: null };
}

export function PathPatchingPanel({ state, info, navigate }: { state: DebuggerState; info: ServerInfo | null; navigate: (s: DebuggerState) => void }) {
  const client = useClient();
  // the form is a draft; "patch paths" puts it in the URL (snd, rcv, pin), which the request reads
  const [senders, setSenders] = useState(state.senders);
  const [receivers, setReceivers] = useState(state.receivers);
  const [inputs, setInputs] = useState(state.pathInputs);
  useEffect(() => { setSenders(state.senders); setReceivers(state.receivers); setInputs(state.pathInputs); },
    [state.senders, state.receivers, state.pathInputs]);
  const s = parseHeads(senders, info?.model.n_layer, info?.model.n_head);
  const r = parseHeads(receivers, info?.model.n_layer, info?.model.n_head);
  const ready = state.prompt !== "" && state.prompt2 !== "";
  const body = useMemo(() => {
    const snd = parseHeads(state.senders), rcv = parseHeads(state.receivers);
    if (snd.error || rcv.error || snd.heads.length === 0 || state.pathInputs.length === 0) return null;
    return { clean: state.prompt, corrupted: state.prompt2, loss: lossSpec(state), senders: snd.heads, receivers: rcv.heads,
      receiver_inputs: state.pathInputs };
  }, [state]);
  const result = useLoad(ready && body ? JSON.stringify(body) : null, () => unwrap(client.POST("/api/v1/patching/path", { body: body! })));
  const valid = ready && !s.error && !r.error && s.heads.length > 0 && inputs.length > 0;
  return (
    <section className="panel" aria-label="path patching">
      <div className="panel-head" title={TIPS.pathPatching}>
        <strong>Path patching</strong> <span className="muted">{TIPS.pathPatching} Clean = prompt, corrupted = second prompt.</span>
      </div>
      {!ready && <p className="muted">Path patching needs two prompts of the same length: tick "compare with a second prompt".</p>}
      <form className="path-form" onSubmit={(e) => { e.preventDefault(); if (valid) navigate({ ...state, senders, receivers, pathInputs: inputs }); }}>
        <label title="Heads whose output takes its value from the corrupted run">senders <input aria-label="sender heads" className="mono" placeholder="L2.H3, L2.H5" value={senders} onChange={(e) => setSenders(e.target.value)} /></label>
        <label title="Heads whose inputs are recomputed; empty = the senders' direct path to the logits">receivers <input aria-label="receiver heads" className="mono" placeholder="empty = logits" value={receivers} onChange={(e) => setReceivers(e.target.value)} /></label>
        <span title="Which inputs of the receivers see the senders' change">through</span>
        {(["q", "k", "v"] as const).map((x) => (
          <label key={x} className="chip"><input type="checkbox" aria-label={`receiver input ${x}`} checked={inputs.includes(x)}
            onChange={(e) => setInputs(e.target.checked ? (["q", "k", "v"] as const).filter((y) => y === x || inputs.includes(y)) : inputs.filter((y) => y !== x))} />{x}</label>
        ))}
        <button type="submit" disabled={!valid}>patch paths</button>
      </form>
      {(s.error || r.error) && <div className="error-text" role="note">{s.error ?? r.error}</div>}
      <Status load={result} what="path patching" />
      {result.status === "ok" && (
        <div className="mono" data-testid="path-result">
          clean {formatNumber(result.data.clean_loss)} · corrupted {formatNumber(result.data.corrupted_loss)} · patched{" "}
          {formatNumber(result.data.patched_loss)} · restored fraction{" "}
          <strong data-testid="path-fraction">{result.data.restored_fraction === null ? "undefined (clean = corrupted)" : formatNumber(result.data.restored_fraction)}</strong>
        </div>
      )}
    </section>
  );
}
