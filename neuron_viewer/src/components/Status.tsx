/** Loading and error states of an API call, readable: the server's own message, with its status. */
import type { Loadable } from "../lib/useApi";

export function Status({ load, what }: { load: Loadable<unknown>; what: string }) {
  if (load.status === "loading") return <div className="loading" role="status">Computing {what}…</div>;
  if (load.status === "error")
    return (
      <div className="error-box" role="alert">
        <strong>{what} failed{load.httpStatus ? ` (HTTP ${load.httpStatus})` : ""}:</strong> {load.message}
      </div>
    );
  return null;
}
