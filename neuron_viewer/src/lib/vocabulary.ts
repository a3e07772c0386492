/** The model's known vocabulary (ServerInfo.model.known_token_ids): tokens outside it share one
 * embedding (a model organism never saw them), so the model cannot tell them apart. */
import { useMemo } from "react";
import type { ServerInfo } from "../api/client";
import { showToken } from "./color";

/** The set of known token ids, or null when every token is known (or the info is not loaded). */
export function useKnownTokens(info: ServerInfo | null): Set<number> | null {
  const ids = info?.model.known_token_ids;
  return useMemo(() => (ids ? new Set(ids) : null), [ids]);
}

/** The indices of `ids` the model never saw (empty when every token is known). */
export function unseenPositions(ids: number[], known: Set<number> | null): number[] {
  if (!known) return [];
  const out: number[] = [];
  ids.forEach((id, i) => { if (!known.has(id)) out.push(i); });
  return out;
}

export const UNSEEN_NOTE = "the model never saw it in training: it shares one embedding with every other unseen token, so the model cannot tell them apart (expect ranks in the tens of thousands and zero effects)";

export function unseenWarning(tokens: string[], known: Set<number> | null, ids: number[]): string | null {
  const unseen = unseenPositions(ids, known);
  if (!unseen.length) return null;
  const list = [...new Set(unseen.map((i) => `'${showToken(tokens[i])}'`))].slice(0, 8).join(", ");
  return `${unseen.length} token${unseen.length === 1 ? "" : "s"} the model never saw (${list}${unseen.length > 8 ? ", …" : ""}): ${UNSEEN_NOTE}`;
}
