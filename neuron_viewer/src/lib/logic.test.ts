import { describe, expect, it } from "vitest";
import { errorMessage, hidePaths } from "../api/client";
import { filterRows, sortRows, value } from "./nodes";
import { triangleRow } from "./nodePage";
import { attributionRequest, swapTargets, withIntervention, withTrace } from "./requests";
import { syntheticResult } from "./synthetic";
import { componentLabel, saeSite, tableRows, topKExplanation } from "./nodes";
import { modesFor } from "./requests";
import { expandEntries, textWarnings } from "../components/TokenList";
import { parseHeads } from "../views/PathPatchingPanel";
import { DEFAULT_STATE, parseRoute, routeToSearch, type DebuggerState, type Route } from "./urlState";
import { sweepGrid } from "../views/SweepPanel";
import { layoutGraph } from "../views/GraphPanel";
import { navigateKey } from "../views/NodePageView";
import { visibleRange } from "../components/VirtualRows";

const IOI: DebuggerState = {
  ...DEFAULT_STATE,
  prompt: "When Mary and John went to the store, John gave a drink to",
  prompt2: "When Mary and John went to the store, Mary gave a drink to",
  targets: [" Mary"],
  distractors: [" John"],
};

describe("URL state", () => {
  it("round-trips every field of the debugger and node routes", () => {
    const state: DebuggerState = {
      ...IOI,
      interventions: [{ node: { kind: "attn_head", layer: 1, index: 2, position: 13, key_position: 4, sae: null }, mode: "mean" }],
      trace: { node: { kind: "attn_head", layer: 2, index: 0, position: -1, key_position: 3, sae: null }, through: "k", downstream: null },
      mlp: "latents", attention: "latents", topK: 50,
      sort: { metric: "direct_effect", side: "diff", desc: false, abs: false },
      kinds: ["attn_head", "mlp_neuron"], layer: 2, search: "L2.H0", panel: "sweep", sweepKind: "resid_pre",
    };
    const routes: Route[] = [
      { view: "debugger", state },
      { view: "node", node: { kind: "sae_latent", layer: 1, index: 7, sae: "blocks.1.hook_mlp_out" }, state },
      { view: "synthetic", rows: 10000, state: DEFAULT_STATE },
    ];
    for (const route of routes) expect(parseRoute(routeToSearch(route))).toEqual(route);
  });

  it("round-trips the round-2 view state: grouping, columns, graph budgets, path patching, steering", () => {
    const state: DebuggerState = { ...IOI, panel: "generate", group: true, cols: ["direct_effect", "total_effect"], graphNodes: 10,
      graphEdges: 20, senders: "L3.H0, L3.H1", receivers: "L2.H1", pathInputs: ["q", "k"], steer: "L3.mlp.F12", alpha: -7.5, steerPositions: [3, 14] };
    expect(parseRoute(routeToSearch({ view: "debugger", state })).state).toEqual(state);
    expect(parseRoute("?alpha=abc&gn=5000&spos=1,x,2").state).toMatchObject({ alpha: 10, graphNodes: 200, steerPositions: [1, 2] });
  });
  it("falls back to defaults on garbage", () => {
    const route = parseRoute("?k=abc&sort=nonsense&iv={bad&kinds=foo,attn_head&panel=zzz");
    expect(route.state.topK).toBe(20);
    expect(route.state.sort.metric).toBe("total_effect");
    expect(route.state.interventions).toEqual([]);
    expect(route.state.kinds).toEqual(["attn_head"]);
    expect(route.state.panel).toBe("none");
  });

  it("keeps targets with leading spaces exactly", () => {
    const s = parseRoute(routeToSearch({ view: "debugger", state: IOI })).state;
    expect(s.targets).toEqual([" Mary"]);
    expect(s.prompt).toBe(IOI.prompt);
  });
});

describe("requests", () => {
  const row = syntheticResult(3, 2).nodes[0]; // an attn_head row at q=0, k=0
  it("builds an attribution request with both prompts and interventions on the first", () => {
    const req = attributionRequest(withIntervention(IOI, row, "zero", "pair"));
    expect(req.prompts).toHaveLength(2);
    expect(req.prompts[0].interventions).toEqual([{ node: { kind: "attn_head", layer: 0, index: 0, position: 0, key_position: 0, sae: null }, mode: "zero" }]);
    expect(req.prompts[1].interventions).toEqual([]);
    expect(req.loss).toEqual({ kind: "logit_diff", targets: [" Mary"], distractors: [" John"] });
  });
  it("replaces an earlier intervention on the same node; patches name the source prompt", () => {
    const s = withIntervention(withIntervention(IOI, row, "zero"), row, "patch");
    expect(s.interventions).toHaveLength(1);
    expect(s.interventions[0]).toMatchObject({ mode: "patch", source_prompt: 1 });
  });
  it("sends a value trace to the node being traced, or to the loss", () => {
    const toLoss = withTrace(IOI, row, "v");
    expect(toLoss.trace?.downstream).toBeNull();
    const traced = withTrace(IOI, syntheticResult(3).nodes[1], "pre");
    const chained = withTrace(traced, row, "v");
    expect(chained.trace?.downstream).toEqual(traced.trace?.node);
    expect(withTrace(traced, row, "k").trace?.downstream).toBeNull();
  });
  it("acts on a head's whole output at the query by default, and only zeroes a (query, key) pair", () => {
    const whole = withIntervention(IOI, row, "mean");
    expect(whole.interventions[0]).toEqual({ node: { kind: "attn_head", layer: 0, index: 0, position: 0, key_position: null, sae: null }, mode: "mean" });
    expect(withIntervention(IOI, row, "mean", "pair")).toBe(IOI);      // the engine refuses it: not offered
    expect(modesFor("pair")).toEqual(["zero"]);
    expect(modesFor("head")).toEqual(["zero", "mean", "resample", "patch"]);
  });
  it("swaps targets and distractors", () => {
    expect(swapTargets(IOI)).toMatchObject({ targets: [" John"], distractors: [" Mary"] });
  });
});

describe("node table model", () => {
  const rows = syntheticResult(500, 2).nodes;
  it("sorts by |value| descending with missing values last", () => {
    const withMissing = [...rows.slice(0, 10), { ...rows[10], values: [null, rows[10].values[1]] }];
    const sorted = sortRows(withMissing, { metric: "total_effect", side: "left", desc: true, abs: true });
    const vals = sorted.map((r) => value(r, "total_effect", "left"));
    expect(vals[vals.length - 1]).toBeNull();
    const present = vals.slice(0, -1).map((v) => Math.abs(v!));
    expect(present).toEqual([...present].sort((a, b) => b - a));
  });
  it("sorts by the signed right-minus-left difference", () => {
    const sorted = sortRows(rows, { metric: "activation", side: "diff", desc: false, abs: false });
    const diffs = sorted.map((r) => r.values[1]!.activation - r.values[0]!.activation);
    expect(diffs).toEqual([...diffs].sort((a, b) => a - b));
  });
  it("filters by kind, layer and label", () => {
    expect(filterRows(rows, { kinds: ["attn_head"], layer: 3, search: "" }).every((r) => r.kind === "attn_head" && r.layer === 3)).toBe(true);
    expect(filterRows(rows, { kinds: [], layer: null, search: "L0.H0" }).map((r) => r.index)).toContain(0);
  });
  it("computes the visible window of a virtual list", () => {
    expect(visibleRange(0, 240, 24, 10000, 2)).toEqual({ first: 0, last: 12 });
    expect(visibleRange(24 * 5000, 240, 24, 10000, 2)).toEqual({ first: 4998, last: 5012 });
    expect(visibleRange(24 * 9999, 240, 24, 10000, 2).last).toBe(10000);
  });
});

describe("errors", () => {
  it("shows FastAPI 422 details with their field path", () => {
    expect(errorMessage(422, { detail: [{ loc: ["body", "prompts", 0, "text"], msg: "String should have at least 1 character", type: "x" }] }))
      .toBe("prompts.0.text: String should have at least 1 character");
    expect(errorMessage(404, { detail: "no node datasets are loaded (start the server with --datasets)" }))
      .toBe("no node datasets are loaded (start the server with --datasets)");
    expect(errorMessage(500, null)).toBe("HTTP 500");
  });
  it("hides the server's file-system paths but keeps URLs and hook points", () => {
    expect(hidePaths("no node dataset at '' in local directory /work/wt/data/datasets/organism: manifest.json is missing"))
      .toBe("no node dataset at '' in local directory …/organism: manifest.json is missing");
    expect(hidePaths("see https://lab.example.org/a/b and blocks.3.hook_mlp_out")).toBe("see https://lab.example.org/a/b and blocks.3.hook_mlp_out");
    expect(errorMessage(404, { detail: "cannot read /srv/x/y.json" })).toBe("cannot read …/y.json");
  });
});

describe("panels and node pages", () => {
  it("lays sweeps out as 2-D grids and maps cells back to nodes", () => {
    const heads = sweepGrid({ kind: "heads", axes: ["layer", "head"], values: [[0.1, 0.2], [0.3, null]], raw_loss: [], clean_loss: 1, corrupted_loss: 0, tokens: ["a", "b"] });
    expect(heads.rowLabels).toEqual(["L0", "L1"]);
    expect(heads.select(1, 0)).toEqual({ layer: 1, head: 0, position: null });
    const cube = sweepGrid({ kind: "heads_by_position", axes: ["layer", "head", "position"], values: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]], raw_loss: [], clean_loss: 1, corrupted_loss: 0, tokens: ["a", "b"] });
    expect(cube.rowLabels).toEqual(["L0.H0", "L0.H1", "L1.H0", "L1.H1"]);
    expect(cube.cells[2]).toEqual([5, 6]);
    expect(cube.select(3, 1)).toEqual({ layer: 1, head: 1, position: 1 });
  });
  it("places graph layers left to right", () => {
    const placed = layoutGraph({ loss: 0, tokens: [], edges: [], nodes: [
      { id: "e", kind: "embedding", layer: -1, index: 0, position: 0, label: "emb", total_effect: 1 },
      { id: "h", kind: "attn_head", layer: 0, index: 1, position: 0, label: "h", total_effect: 1 },
      { id: "l", kind: "loss", layer: 2, index: 0, position: 0, label: "loss", total_effect: 1 },
    ] }, 900, 400);
    expect(placed.get("e")!.x).toBeLessThan(placed.get("h")!.x);
    expect(placed.get("h")!.x).toBeLessThan(placed.get("l")!.x);
  });
  it("reads rows of TDB's flattened lower triangle", () => {
    const flat = [1, 2, 3, 4, 5, 6]; // rows [1] [2 3] [4 5 6]
    expect(triangleRow(flat, 0)).toEqual([1]);
    expect(triangleRow(flat, 2)).toEqual([4, 5, 6]);
  });
  it("labels latents of two SAEs in one layer apart", () => {
    expect(componentLabel({ kind: "sae_latent", layer: 3, index: 468, sae: "blocks.3.hook_mlp_out" })).toBe("L3.mlp.F468");
    expect(componentLabel({ kind: "sae_latent", layer: 3, index: 468, sae: "blocks.3.hook_attn_out" })).toBe("L3.attn.F468");
    expect(componentLabel({ kind: "sae_error", layer: 0, index: 0, sae: "blocks.0.hook_attn_out" })).toBe("L0.attn.err");
    expect(saeSite("blocks.2.mlp.hook_post")).toBe("mlp_post");
  });
  it("rejects node-page links that name no node", () => {
    expect(parseRoute("?view=node&kind=banana&layer=0&index=0").view).toBe("bad-node");
    expect(parseRoute("?view=node&kind=attn_head&layer=x&index=0").view).toBe("bad-node");
    expect(parseRoute("?view=node&kind=attn_head&layer=1&index=2").view).toBe("node");
  });
  it("groups rows by type after sorting, and explains the row count of a top-k", () => {
    const rows = syntheticResult(300).nodes;
    const grouped = tableRows(rows, { kinds: [], layer: null, search: "", sort: DEFAULT_STATE.sort, group: true });
    const firstNeuron = grouped.findIndex((r) => r.kind === "mlp_neuron");
    expect(grouped.slice(0, firstNeuron).every((r) => r.kind === "attn_head")).toBe(true);
    expect(grouped.slice(firstNeuron).every((r) => r.kind === "mlp_neuron")).toBe(true);
    expect(topKExplanation(20, 1, 112)).toContain("at most 7 × 20 = 140");
  });
  it("expands ranges and lists of targets, and warns about a missing space only where it is a slip", () => {
    expect(expandEntries("33..99")).toHaveLength(67);
    expect(expandEntries("01..03")).toEqual(["01", "02", "03"]);
    expect(expandEntries(" 1..3")).toEqual([" 1", " 2", " 3"]);
    expect(expandEntries(" Mary, John")).toEqual([" Mary", " John"]);
    expect(expandEntries(",")).toEqual([","]);
    expect(textWarnings("33", "The war lasted from the year 1732 to the year 17")).toEqual([]);
    expect(textWarnings("Mary", "gave a drink to")[0]).toContain("no leading space");
    expect(textWarnings(".", "The end")).toEqual([]);
  });
  it("parses head lists for path patching", () => {
    expect(parseHeads("L1.H2, L0H3")).toEqual({ heads: [[1, 2], [0, 3]], error: null });
    expect(parseHeads("L9.H0", 4, 8).error).toContain("4 layers");
    expect(parseHeads("banana").error).toContain("not a head");
  });
  it("navigates nodes by arrow keys within bounds", () => {
    const n = { kind: "mlp_neuron" as const, layer: 0, index: 0, sae: null };
    expect(navigateKey(n, "ArrowRight", 3)).toEqual({ ...n, index: 1 });
    expect(navigateKey(n, "ArrowLeft", 3)).toBeNull();
    expect(navigateKey({ ...n, layer: 2 }, "ArrowDown", 3)).toBeNull();
    expect(navigateKey(n, "ArrowDown", 3)).toEqual({ ...n, layer: 1 });
    expect(navigateKey({ ...n, index: 3 }, "ArrowRight", 3, 4)).toBeNull();
    expect(navigateKey({ ...n, index: 2 }, "ArrowRight", 3, 4)).toEqual({ ...n, index: 3 });
  });
});
