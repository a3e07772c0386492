/** The app shell: server info, routing by the URL's query string (pushState / popstate). */
import { useCallback, useEffect, useMemo, useState } from "react";
import { authToken, setAuthToken, unwrap } from "./api/client";
import { NodeTable } from "./components/NodeTable";
import { syntheticResult } from "./lib/synthetic";
import { useClient, useLoad } from "./lib/useApi";
import { parseRoute, routeToSearch, type DebuggerState, type NodeAddress, type Route } from "./lib/urlState";
import { Status } from "./components/Status";
import { DebuggerView } from "./views/DebuggerView";
import { NodePageView } from "./views/NodePageView";

function useRoute(): [Route, (r: Route) => void] {
  const [route, setRoute] = useState(() => parseRoute(window.location.search));
  useEffect(() => {
    const onPop = () => setRoute(parseRoute(window.location.search));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  const go = useCallback((next: Route) => {
    const search = routeToSearch(next);
    if (search !== window.location.search) window.history.pushState(null, "", `${window.location.pathname}${search}`);
    setRoute(parseRoute(search));
  }, []);
  return [route, go];
}

function SyntheticTable({ rows, state, go }: { rows: number; state: DebuggerState; go: (s: DebuggerState) => void }) {
  const result = useMemo(() => syntheticResult(rows), [rows]);
  return (
    <div>
      <p className="muted">{result.explained} (performance page; no server)</p>
      <NodeTable rows={result.nodes} tokens={result.prompts[0].tokens} comparing={false} view={state} layers={12}
        onSort={(sort) => go({ ...state, sort })} onFilter={(f) => go({ ...state, ...f })} />
    </div>
  );
}

/** Copies the page's URL, which holds the whole view. */
function CopyLink() {
  const [done, setDone] = useState(false);
  return (
    <button className="link" title="the URL reproduces this view" onClick={() => {
      navigator.clipboard?.writeText(window.location.href).then(() => setDone(true), () => setDone(false));
      setTimeout(() => setDone(false), 1500);
    }}>{done ? "link copied" : "copy link"}</button>
  );
}

function TokenBox() {
  const [open, setOpen] = useState(false);
  const [value, setValue] = useState(authToken() ?? "");
  if (!open) return <button className="link" onClick={() => setOpen(true)}>token</button>;
  return (
    <form onSubmit={(e) => { e.preventDefault(); setAuthToken(value || null); window.location.reload(); }}>
      <input type="password" aria-label="bearer token" value={value} onChange={(e) => setValue(e.target.value)} placeholder="bearer token" />
      <button type="submit">save</button>
    </form>
  );
}

export function App() {
  const client = useClient();
  const [route, go] = useRoute();
  const info = useLoad("info", () => unwrap(client.GET("/api/v1/info")));
  const serverInfo = info.status === "ok" ? info.data : null;
  const navigate = useCallback((state: DebuggerState) => go(route.view === "synthetic" ? { ...route, state } : { view: "debugger", state }), [go, route]);
  const openNode = useCallback((node: NodeAddress) => go({ view: "node", node, state: route.state }), [go, route.state]);
  return (
    <div className="app">
      <header className="top">
        <a className="brand" href="/" onClick={(e) => { e.preventDefault(); go({ view: "debugger", state: route.state }); }}>mechscope</a>
        {serverInfo && (
          <span className="muted mono">
            {serverInfo.model.name} · {serverInfo.model.n_layer} layers × {serverInfo.model.n_head} heads · d_mlp {serverInfo.model.d_mlp}
            {serverInfo.saes.length ? ` · ${serverInfo.saes.length} SAEs` : " · no SAEs"} · {serverInfo.datasets.length ? `${serverInfo.datasets.length} datasets` : "no datasets"}
          </span>
        )}
        <span className="spacer" />
        <CopyLink />
        <TokenBox />
      </header>
      {route.view !== "synthetic" && <Status load={info} what="server info" />}
      {route.view === "debugger" && <DebuggerView state={route.state} info={serverInfo} navigate={navigate} openNode={openNode} />}
      {route.view === "node" && (
        <NodePageView node={route.node} info={serverInfo} prompts={[route.state.prompt, route.state.prompt2].filter(Boolean)}
          go={(node) => go({ view: "node", node, state: route.state })} back={() => go({ view: "debugger", state: route.state })} />
      )}
      {route.view === "bad-node" && (
        <div className="error-box" role="alert" data-testid="bad-node">
          <strong>This link does not name a node:</strong> {route.message}.{" "}
          <button className="link" onClick={() => go({ view: "debugger", state: route.state })}>back to the debugger</button>
        </div>
      )}
      {route.view === "synthetic" && <SyntheticTable rows={route.rows} state={route.state} go={navigate} />}
    </div>
  );
}
