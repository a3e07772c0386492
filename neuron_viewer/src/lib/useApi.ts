/** Small hooks for API calls: loading / error / data, and a debounced tokenizer preview. */
import { createContext, useContext, useEffect, useState } from "react";
import { ApiError, makeClient, unwrap, type ApiClient, type TokenizeResult } from "../api/client";

export const ClientContext = createContext<ApiClient>(makeClient());

export function useClient(): ApiClient {
  return useContext(ClientContext);
}

export type Loadable<T> =
  | { status: "idle" }
  | { status: "loading" }
  | { status: "error"; message: string; httpStatus: number }
  | { status: "ok"; data: T };

/** Runs `load` whenever `key` changes (null key = idle); stale answers are dropped. */
export function useLoad<T>(key: string | null, load: () => Promise<T>): Loadable<T> {
  const [state, setState] = useState<Loadable<T>>({ status: "idle" });
  useEffect(() => {
    if (key === null) {
      setState({ status: "idle" });
      return;
    }
    let live = true;
    setState({ status: "loading" });
    load().then(
      (data) => live && setState({ status: "ok", data }),
      (e: unknown) => live && setState({
        status: "error",
        message: e instanceof Error ? e.message : String(e),
        httpStatus: e instanceof ApiError ? e.status : 0,
      }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return state;
}

/** The tokens of `text` from /api/v1/tokenize, debounced. Prompts start with <|endoftext|> (as the
 * server runs them); a target or distractor is tokenized alone (`prependBos` false). */
export function useTokens(text: string, delayMs = 200, prependBos = true): Loadable<TokenizeResult> {
  const client = useClient();
  const [debounced, setDebounced] = useState(text);
  useEffect(() => {
    const t = setTimeout(() => setDebounced(text), delayMs);
    return () => clearTimeout(t);
  }, [text, delayMs]);
  return useLoad(debounced === "" ? null : `tok:${prependBos}:${debounced}`,
    () => unwrap(client.POST("/api/v1/tokenize", { body: { text: debounced, prepend_bos: prependBos } })));
}
