import { act, cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { useState } from "react";
import { makeClient, type AttributionResult } from "../api/client";
import { syntheticResult } from "../lib/synthetic";
import { ClientContext } from "../lib/useApi";
import { DEFAULT_STATE, type DebuggerState } from "../lib/urlState";
import { NodeTable, type NodeAction } from "./NodeTable";
import { TokenHeatmap } from "./TokenHeatmap";
import { textWarnings } from "./TokenList";
import { NodePageView } from "../views/NodePageView";
import { ResultView } from "../views/DebuggerView";

afterEach(cleanup);

function Harness({ result, comparing = false, onAction }: { result: AttributionResult; comparing?: boolean; onAction?: (a: NodeAction) => void }) {
  const [view, setView] = useState<DebuggerState>(DEFAULT_STATE);
  return (
    <NodeTable rows={result.nodes} tokens={result.prompts[0].tokens} comparing={comparing} view={view} layers={12}
      onSort={(sort) => setView({ ...view, sort })} onFilter={(f) => setView({ ...view, ...f })}
      onAction={onAction && ((_, a) => onAction(a))} />
  );
}

const firstRowKey = () => document.querySelector('[data-row-index="0"]')!.getAttribute("data-key");

describe("NodeTable", () => {
  it("renders only the visible rows of 10,000 and re-sorts on a header click", () => {
    const result = syntheticResult(10000);
    render(<Harness result={result} />);
    expect(screen.getByTestId("row-count").textContent).toBe("10000 of 10000 nodes");
    const rendered = document.querySelectorAll("[data-row-index]").length;
    expect(rendered).toBeGreaterThan(10);
    expect(rendered).toBeLessThan(60);
    // default: |total effect| descending
    const best = [...result.nodes].sort((a, b) => Math.abs(b.values[0]!.total_effect) - Math.abs(a.values[0]!.total_effect))[0];
    expect(firstRowKey()).toBe(best.key);
    fireEvent.click(document.querySelector('[data-sort="activation.left"]')!);
    const top = [...result.nodes].sort((a, b) => Math.abs(b.values[0]!.activation) - Math.abs(a.values[0]!.activation))[0];
    expect(firstRowKey()).toBe(top.key);
    fireEvent.click(document.querySelector('[data-sort="activation.left"]')!); // ascending
    const low = [...result.nodes].sort((a, b) => Math.abs(a.values[0]!.activation) - Math.abs(b.values[0]!.activation))[0];
    expect(firstRowKey()).toBe(low.key);
  });

  it("filters by type and layer", () => {
    render(<Harness result={syntheticResult(300)} />);
    fireEvent.click(screen.getByLabelText("neuron"));
    const rows = [...document.querySelectorAll("[data-row-index]")];
    expect(rows.every((r) => r.getAttribute("data-key")!.startsWith("attn_head"))).toBe(true);
    fireEvent.change(screen.getByLabelText("layer filter"), { target: { value: "3" } });
    expect(screen.getByTestId("row-count").textContent).toBe("25 of 300 nodes");
  });

  it("shows left / right / diff columns when comparing, and offers patch and head traces", () => {
    const actions: NodeAction[] = [];
    render(<Harness result={syntheticResult(30, 2)} comparing onAction={(a) => actions.push(a)} />);
    expect(document.querySelector('[data-sort="total_effect.diff"]')).not.toBeNull();
    const head = [...document.querySelectorAll("[data-row-index]")].find((r) => r.getAttribute("data-key")!.startsWith("attn_head"))! as HTMLElement;
    fireEvent.click(within(head).getByText("patch"));
    fireEvent.click(within(head).getByText("k"));
    fireEvent.click(within(head).getByText("0"));
    fireEvent.click(within(head).getByText("μ"));
    fireEvent.click(within(head).getByLabelText("zero-ablate pair"));
    expect(actions).toEqual([{ type: "patch" }, { type: "trace", through: "k" }, { type: "ablate", mode: "zero", scope: "head" },
      { type: "ablate", mode: "mean", scope: "head" }, { type: "ablate", mode: "zero", scope: "pair" }]);
    // a pair offers no mean / resample / patch: the engine refuses them
    expect(within(head).getAllByRole("button").filter((b) => b.getAttribute("aria-label") === "zero-ablate pair")).toHaveLength(1);
  });
});

describe("ResultView", () => {
  it("shows the traced value, the interventions with remove, and the traced node", async () => {
    const result = syntheticResult(20);
    const state: DebuggerState = {
      ...DEFAULT_STATE, prompt: "x", targets: [" a"], distractors: [" b"],
      interventions: [{ node: { kind: "attn_head", layer: 1, index: 2, position: 3, key_position: 1, sae: null }, mode: "zero" }],
      trace: { node: { kind: "mlp_neuron", layer: 2, index: 5, position: 4, key_position: null, sae: null }, through: "pre", downstream: null },
    };
    const navigated: DebuggerState[] = [];
    // the baseline-loss request goes to a server that refuses: the view must stay readable
    const client = makeClient("http://127.0.0.1:9", async () => new Response(JSON.stringify({ detail: "busy" }), { status: 503 }));
    await act(async () => {
      render(
        <ClientContext.Provider value={client}>
          <ResultView state={state} info={null} result={result} navigate={(s) => navigated.push(s)} openNode={() => {}} />
        </ClientContext.Provider>,
      );
    });
    expect(screen.getByTestId("loss").textContent).toBe("1.2345");
    expect(screen.getByText("traced value")).toBeTruthy();
    expect(screen.getByTestId("trace-banner").textContent).toContain("L2.N5");
    fireEvent.click(screen.getByLabelText("remove intervention 0"));
    expect(navigated[0].interventions).toEqual([]);
    fireEvent.click(screen.getByText("back to the loss"));
    expect(navigated[1].trace).toBeNull();
  });
});

describe("TokenHeatmap and token warnings", () => {
  it("colours tokens by activation and shows a head's attention row on hover", () => {
    render(<TokenHeatmap tokens={["a", " b", " c"]} values={[0, 1, 2]} scale={2} pairRow={(q) => [[1], [0.5, 0.5], [0, 1, 0]][q]} />);
    const spans = document.querySelectorAll(".token-heatmap .tok");
    expect((spans[0] as HTMLElement).style.background).toBe("transparent");
    expect((spans[2] as HTMLElement).style.background).toContain("rgba(255, 127, 14, 0.9");
    fireEvent.mouseEnter(spans[2]);
    expect((spans[1] as HTMLElement).style.background).toContain("0.9"); // key 1 gets all of query 2's attention
    expect((spans[2] as HTMLElement).style.background).toBe("transparent");
  });
  it("warns about a target without a leading space", () => {
    expect(textWarnings("Mary")[0]).toContain("no leading space");
    expect(textWarnings(" Mary")).toEqual([]);
  });
});

describe("NodePageView", () => {
  it("shows the server's 404 message as a readable no-dataset state", async () => {
    const client = makeClient("http://127.0.0.1:9", async (input) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.includes("/nodes/attn_head/1/2"))
        return new Response(JSON.stringify({ detail: "no node datasets are loaded (start the server with --datasets)" }), { status: 404 });
      return new Response(JSON.stringify({ detail: "nope" }), { status: 503 });
    });
    await act(async () => {
      render(
        <ClientContext.Provider value={client}>
          <NodePageView node={{ kind: "attn_head", layer: 1, index: 2, sae: null }} prompts={[]} info={null} go={() => {}} back={() => {}} />
        </ClientContext.Provider>,
      );
    });
    const box = await screen.findByTestId("no-dataset");
    expect(box.textContent).toContain("no node datasets are loaded");
    expect(screen.getByTestId("node-title").textContent).toBe("layer 1 head 2");
  });
});

describe("NodePageView with a dataset page", () => {
  // the JSON the server passes through for mechscope's NodePageData (datasets/node_dataset/records.py)
  const page = {
    dataset: "organism", kind: "attn_head", layer: 1, index: 2,
    data: {
      kind: "attn_head", layer: 1, index: 2, token_pair: true, source: "test",
      top_examples: [{ tokens: ["When", " Mary", " and", " John"], activations: [0, 0.5, 0.1, 2.0], max_activation: 2.0, max_position: 3,
        token_pair_activations: [0, 0.5, 0, 0, 0.1, 0, 0, 2.0, 0, 0] }],
      random_sample: [{ tokens: ["x", " y"], activations: [0.2, 0], max_activation: 0.2 }],
      quantile_samples: [[{ tokens: ["q"], activations: [0.1], max_activation: 0.1 }]],
      quantile_boundaries: [0.5],
      stats: { mean: 0.25, max: 2.0, density: null },
      histogram: { edges: [0, 1, 2], counts: [10, 3], underflow: 0, overflow: 1 },
      promoted_tokens: [{ token: " Mary", token_id: 5335, value: 1.5 }],
      suppressed_tokens: [{ token: " John", token_id: 1757, value: -1.2 }],
    },
  };
  it("renders examples with heatmaps, token-pair hover, samples, histogram and token effects", async () => {
    const client = makeClient("http://127.0.0.1:9", async (input) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.includes("/nodes/attn_head/1/2")) return new Response(JSON.stringify(page), { status: 200, headers: { "Content-Type": "application/json" } });
      return new Response(JSON.stringify({ detail: "unexpected" }), { status: 500 });
    });
    await act(async () => {
      render(
        <ClientContext.Provider value={client}>
          <NodePageView node={{ kind: "attn_head", layer: 1, index: 2, sae: null }} prompts={[]} info={null} go={() => {}} back={() => {}} />
        </ClientContext.Provider>,
      );
    });
    const top = await screen.findByLabelText("top-activating examples");
    const toks = top.querySelectorAll(".tok");
    expect([...toks].map((t) => t.textContent)).toEqual(["When", "·Mary", "·and", "·John"]);
    expect(toks[3].classList.contains("max")).toBe(true);
    expect((toks[3] as HTMLElement).style.background).toContain("0.9");
    fireEvent.mouseEnter(toks[3]); // query 3 attends to key 1 ([0, 2.0, 0, 0] is row 3)
    expect((toks[1] as HTMLElement).style.background).toContain("0.9");
    expect((toks[3] as HTMLElement).style.background).toBe("transparent");
    expect(screen.getByLabelText("random sample").textContent).toContain("·y");
    expect(screen.getByLabelText("activation histogram").querySelectorAll("rect")).toHaveLength(2);
    expect(screen.getByLabelText("promoted tokens").textContent).toContain("·Mary");
    expect(screen.getByLabelText("suppressed tokens").textContent).toContain("-1.200");
    expect(screen.getByLabelText("statistics").textContent).toContain("0.250");
  });
});

