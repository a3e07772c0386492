/** The "guided investigations" menu: loads one of the organism's planted tasks and shows its note. */
import { TIPS } from "../lib/glossary";
import { INVESTIGATIONS, investigationState } from "../lib/guided";
import type { DebuggerState } from "../lib/urlState";

/** The investigation the current prompt belongs to (so its note stays on screen), if any. */
function current(state: DebuggerState) {
  return INVESTIGATIONS.find((inv) => inv.state.prompt === state.prompt);
}

export function GuidedMenu({ state, navigate }: { state: DebuggerState; navigate: (s: DebuggerState) => void }) {
  const active = current(state);
  return (
    <div className="guided" aria-label="guided investigations">
      <label title={TIPS.guided}>
        <span className="field-label">guided investigations</span>
        <select aria-label="guided investigation" value={active?.id ?? ""}
          onChange={(e) => {
            const inv = INVESTIGATIONS.find((x) => x.id === e.target.value);
            if (inv) navigate(investigationState(inv));
          }}>
          <option value="">choose a planted task…</option>
          {INVESTIGATIONS.map((inv) => <option key={inv.id} value={inv.id}>{inv.title}</option>)}
        </select>
      </label>
      {active && <p className="guided-note" data-testid="guided-note"><strong>{active.title}.</strong> {active.note}</p>}
    </div>
  );
}
