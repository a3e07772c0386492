// The estimate options of the node table request (issue 23): URL state and request building.
import { describe, expect, it } from "vitest";
import { attributionRequest, estimateFields, shownEstimate } from "./requests";
import { DEFAULT_STATE, parseRoute, routeToSearch, type DebuggerState } from "./urlState";

const IOI: DebuggerState = {
  ...DEFAULT_STATE,
  prompt: "When Mary and John went to the store, John gave a drink to",
  targets: [" Mary"],
  distractors: [" John"],
};
const TRACE: DebuggerState["trace"] = {
  node: { kind: "mlp_neuron", layer: 2, index: 5, position: 4, key_position: null, sae: null }, through: "pre", downstream: null,
};
const ESTIMATE_KEYS = ["total_effect_ln", "total_effect_softmax", "exact_top_n", "graddrop"];

describe("estimate options in the URL", () => {
  it("round-trip, and stay out of the URL at their defaults", () => {
    const state: DebuggerState = { ...IOI, estimate: "frozen", softmax: true, exactTopN: 5, graddrop: true,
      sort: { metric: "exact_effect", side: "left", desc: true, abs: true } };
    const search = routeToSearch({ view: "debugger", state });
    expect(new URLSearchParams(search).get("ln")).toBe("frozen");
    expect(new URLSearchParams(search).get("exact")).toBe("5");
    expect(parseRoute(search).state).toEqual(state);
    const plain = new URLSearchParams(routeToSearch({ view: "debugger", state: IOI }));
    for (const key of ["ln", "softmax", "exact", "graddrop"]) expect(plain.has(key)).toBe(false);
  });
  it("fall back to the defaults on garbage and clamp N to the schema's limit", () => {
    expect(parseRoute("?ln=warm&softmax=yes&exact=abc&graddrop=true").state).toMatchObject(
      { estimate: "live", softmax: false, exactTopN: 0, graddrop: false });
    expect(parseRoute("?exact=5000").state.exactTopN).toBe(200);
    expect(parseRoute("?exact=-3").state.exactTopN).toBe(0);
    expect(parseRoute("?sort=graddrop.left.asc.signed").state.sort).toEqual({ metric: "graddrop", side: "left", desc: false, abs: false });
  });
});

describe("estimate options in the request", () => {
  it("are absent at their defaults", () => {
    const req = attributionRequest(IOI);
    for (const key of ESTIMATE_KEYS) expect(req).not.toHaveProperty(key);
  });
  it("are sent when set", () => {
    const req = attributionRequest({ ...IOI, estimate: "frozen", exactTopN: 5, graddrop: true });
    expect(req).toMatchObject({ total_effect_ln: "frozen", exact_top_n: 5, graddrop: true });
    expect(req).not.toHaveProperty("total_effect_softmax");      // a logit difference has no softmax to correct
  });
  it("send the softmax correction with a log_prob loss only", () => {
    const options = { ...IOI, softmax: true };
    expect(estimateFields(options, { kind: "log_prob", targets: [" Mary"] })).toEqual({ total_effect_softmax: true });
    expect(estimateFields(options, { kind: "logit_diff", targets: [" Mary"], distractors: [" John"] })).toEqual({});
    expect(estimateFields({ ...options, trace: TRACE }, { kind: "log_prob", targets: [" Mary"] })).toEqual({});
  });
  it("leave out the measured columns while tracing (the server refuses them there)", () => {
    const req = attributionRequest({ ...IOI, trace: TRACE, estimate: "frozen", exactTopN: 5, graddrop: true });
    expect(req).toMatchObject({ total_effect_ln: "frozen" });
    expect(req).not.toHaveProperty("exact_top_n");
    expect(req).not.toHaveProperty("graddrop");
  });
  it("let overrides win (the baseline loss request asks for one row)", () => {
    expect(attributionRequest({ ...IOI, exactTopN: 5 }, { exact_top_n: 0 }).exact_top_n).toBe(0);
  });
  it("name the linearisation the total column shows", () => {
    expect(shownEstimate(IOI)).toBe("live");
    expect(shownEstimate({ ...IOI, estimate: "frozen" })).toBe("frozen");
    expect(shownEstimate({ ...IOI, estimate: "live", trace: TRACE })).toBe("trace");
  });
});
