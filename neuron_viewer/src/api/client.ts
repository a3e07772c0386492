/** The typed API client: openapi-fetch over the types openapi-typescript generates from the
 * server's OpenAPI document (src/api/schema.d.ts; never edit it by hand). */
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type AttributionRequest = Schemas["AttributionRequest"];
export type AttributionResult = Schemas["AttributionResult"];
export type NodeRow = Schemas["NodeRow"];
export type NodeValues = Schemas["NodeValues"];
export type NodeRef = Schemas["NodeRef"];
export type NodeIntervention = Schemas["NodeIntervention"];
export type TraceSpec = Schemas["TraceSpec"];
export type PromptResult = Schemas["PromptResult"];
export type TokenPrediction = Schemas["TokenPrediction"];
export type TokenSummary = Schemas["TokenSummary"];
export type ServerInfo = Schemas["ServerInfo"];
export type TokenizeResult = Schemas["TokenizeResult"];
export type PatchingSweepResult = Schemas["PatchingSweepResult"];
export type SweepKind = NonNullable<Schemas["PatchingSweepRequest"]["kind"]>;
export type GraphResult = Schemas["GraphResult"];
export type NodePage = Schemas["NodePage"];
export type NodeActivationsResult = Schemas["NodeActivationsResult"];
export type WriteTokensResult = Schemas["WriteTokensResult"];
export type NodeKind = NodeRef["kind"];

const TOKEN_KEY = "mechscope.authToken";

/** The bearer token (only needed when the server runs with --auth-token), kept in localStorage. */
export function authToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(TOKEN_KEY) ?? null;
  } catch {
    return null;
  }
}

export function setAuthToken(token: string | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

const auth: Middleware = {
  onRequest({ request }) {
    const token = authToken();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
};

export type ApiClient = ReturnType<typeof createClient<paths>>;

export function makeClient(baseUrl = "", fetchImpl?: typeof fetch): ApiClient {
  const client = createClient<paths>({ baseUrl, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
  client.use(auth);
  return client;
}

/** An error from the server, with the readable message of its body. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "ApiError";
  }
}

type ErrorItem = { loc?: (string | number)[]; msg?: string };

/** A message without the server's file-system paths ("/srv/data/organism/manifest.json" →
 * "…/manifest.json"): they mean nothing to a browser user and reveal the server's layout. */
export function hidePaths(message: string): string {
  return message.replace(/(?<![:/\w])(?:\/[\w.\-+~@]+){2,}\/?/g, (path) => {
    const parts = path.split("/").filter(Boolean);
    return `…/${parts[parts.length - 1]}`;
  });
}

/** The readable message of an error body: FastAPI's 422 list ("prompts.0.text: too short"),
 * or a plain `detail` string (404, 503, ...), or the status when the body says nothing. */
export function errorMessage(status: number, body: unknown): string {
  return hidePaths(rawErrorMessage(status, body));
}

function rawErrorMessage(status: number, body: unknown): string {
  const detail = (body as { detail?: unknown } | null | undefined)?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length > 0) {
    return (detail as ErrorItem[])
      .map((item) => {
        const loc = (item.loc ?? []).filter((part) => part !== "body").join(".");
        return loc ? `${loc}: ${item.msg ?? "invalid"}` : (item.msg ?? "invalid");
      })
      .join("; ");
  }
  if (status === 401) return "the server needs a bearer token (set it under 'token')";
  return `HTTP ${status}`;
}

/** Unwrap an openapi-fetch answer: the data, or an ApiError with the server's message. */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let answer;
  try {
    answer = await call;
  } catch (e) {
    throw new ApiError(0, `cannot reach the server: ${(e as Error).message}`);
  }
  if (answer.data !== undefined && answer.response.ok) return answer.data;
  throw new ApiError(answer.response.status, errorMessage(answer.response.status, answer.error));
}
