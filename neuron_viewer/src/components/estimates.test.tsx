// The node table's exact and graddrop columns, the total column's note, and the estimate controls (issue 23).
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { useState } from "react";
import { makeClient, type NodeRow } from "../api/client";
import { ClientContext } from "../lib/useApi";
import { syntheticResult } from "../lib/synthetic";
import type { EstimateOptions, ShownEstimate } from "../lib/requests";
import { DEFAULT_STATE, type DebuggerState } from "../lib/urlState";
import { EstimateControls, clampRows } from "./EstimateControls";
import { NodeTable, TOTAL_EFFECT_NOTE, tableColumns } from "./NodeTable";

afterEach(cleanup);

/** 30 synthetic rows; the first `exact` carry an exact effect and, with `graddrop`, every row a GradDrop score. */
function measuredRows(exact: number, graddrop = false): NodeRow[] {
  return syntheticResult(30).nodes.map((row, i) => ({
    ...row,
    values: row.values.map((v) => v && {
      ...v,
      ...(i < exact ? { exact_effect: (i % 2 ? -1 : 1) * (i + 1) * 0.1 } : {}),
      ...(graddrop ? { graddrop: Math.abs(v.total_effect) * 2 } : {}),
    }),
  }));
}

// the explanation lookup gets a quick "none" instead of trying the network
const offline = makeClient("http://127.0.0.1:9", async () => new Response(JSON.stringify({ detail: "none" }), { status: 404 }));

function Table({ rows, estimate }: { rows: NodeRow[]; estimate?: ShownEstimate }) {
  const [view, setView] = useState<DebuggerState>(DEFAULT_STATE);
  return (
    <ClientContext.Provider value={offline}>
      <NodeTable rows={rows} tokens={syntheticResult(1).prompts[0].tokens} comparing={false} view={view} layers={12}
        onSort={(sort) => setView({ ...view, sort })} onFilter={(f) => setView({ ...view, ...f })} estimate={estimate} />
    </ClientContext.Provider>
  );
}

/** Renders a table and lets its explanation lookup settle. */
const renderTable = (rows: NodeRow[], estimate?: ShownEstimate) => act(async () => { render(<Table rows={rows} estimate={estimate} />); });
const headers = () => [...document.querySelectorAll("[data-sort]")].map((h) => h.getAttribute("data-sort"));
const cells = (col: string) => [...document.querySelectorAll(`[data-col="${col}"]`)].map((c) => c.textContent);

describe("node table columns from the estimate options", () => {
  it("has no exact or graddrop column when the rows carry none", async () => {
    await renderTable(syntheticResult(30).nodes);
    expect(headers()).toEqual(["activation.left", "write_magnitude.left", "direct_effect.left", "total_effect.left"]);
  });

  it("shows exact next to total: numbers on the measured rows, empty cells elsewhere, colour-scaled, sortable", async () => {
    await renderTable(measuredRows(5));
    expect(headers()).toEqual(["activation.left", "write_magnitude.left", "direct_effect.left", "total_effect.left", "exact_effect.left"]);
    const values = cells("exact_effect.left");
    expect(values.filter((t) => t !== "")).toHaveLength(5);
    expect(values.filter((t) => t !== "").every((t) => Number.isFinite(Number(t)))).toBe(true);
    expect(values.filter((t) => t === "")).toHaveLength(values.length - 5);
    // sort by |exact| descending: the measured rows first, largest (row 4, 0.5) on top, full colour
    fireEvent.click(document.querySelector('[data-sort="exact_effect.left"]')!);
    expect(cells("exact_effect.left").slice(0, 6)).toEqual(["0.500", "-0.400", "0.300", "-0.200", "0.100", ""]);
    const top = document.querySelector('[data-row-index="0"] [data-col="exact_effect.left"]') as HTMLElement;
    expect(top.style.background).toContain("rgba(214, 39, 40, 0.8");
    expect(top.getAttribute("title")).toBe("exact 0.5");
    const empty = document.querySelector('[data-row-index="5"] [data-col="exact_effect.left"]') as HTMLElement;
    expect(empty.style.background).toBe("transparent");
    expect(document.querySelector('[data-sort="exact_effect.left"]')!.getAttribute("title")).toMatch(/^exact — measured total effect\. loss\(clean\) − loss\(node zero-ablated\)/);
  });

  it("adds a graddrop column, and keeps exact after the metrics when total is hidden", async () => {
    await renderTable(measuredRows(3, true));
    expect(headers().slice(-3)).toEqual(["total_effect.left", "exact_effect.left", "graddrop.left"]);
    expect(cells("graddrop.left").every((t) => Number.isFinite(Number(t)) && t !== "")).toBe(true);
    expect(document.querySelector('[data-sort="graddrop.left"]')!.getAttribute("title")).toMatch(/^graddrop — GradDrop score\./);
    expect(tableColumns(["activation", "direct_effect"], measuredRows(3, true))).toEqual(
      ["activation", "direct_effect", "exact_effect", "graddrop"]);
  });

  it("says in the total column's header which linearisation it shows", async () => {
    await renderTable(syntheticResult(10).nodes);
    const title = () => document.querySelector('[data-sort="total_effect.left"]')!.getAttribute("title")!;
    expect(title()).toContain(TOTAL_EFFECT_NOTE.live);
    expect(title()).toMatch(/live final LayerNorm \(as requested; the default\).*Live is the default because it ranks/);
    cleanup();
    await renderTable(syntheticResult(10).nodes, "frozen");
    expect(title()).toContain(TOTAL_EFFECT_NOTE.frozen);
    expect(title()).toMatch(/scale held constant \(as requested: frozen/);
    expect(title()).not.toContain(TOTAL_EFFECT_NOTE.live);
  });
});

describe("EstimateControls", () => {
  const LOGIT_DIFF = { kind: "logit_diff" as const, targets: [" Mary"], distractors: [" John"] };
  function Controls({ trace = null, loss = LOGIT_DIFF, seen }: {
    trace?: DebuggerState["trace"]; loss?: typeof LOGIT_DIFF | { kind: "log_prob"; targets: string[] }; seen: EstimateOptions[];
  }) {
    const [options, setOptions] = useState<EstimateOptions>(DEFAULT_STATE);
    return <EstimateControls options={options} loss={loss} trace={trace} maxExact={200}
      onChange={(patch) => { const next = { ...options, ...patch }; seen.push(next); setOptions(next); }} />;
  }
  const pick = ({ estimate, softmax, exactTopN, graddrop }: EstimateOptions) => ({ estimate, softmax, exactTopN, graddrop });

  it("edit the options; the softmax correction only with a log_prob loss", () => {
    const seen: EstimateOptions[] = [];
    render(<Controls seen={seen} />);
    fireEvent.change(screen.getByLabelText("estimate"), { target: { value: "frozen" } });
    fireEvent.change(screen.getByLabelText("exact ablation for the top N rows"), { target: { value: "5" } });
    fireEvent.click(screen.getByLabelText("GradDrop"));
    expect(pick(seen[seen.length - 1])).toEqual({ estimate: "frozen", softmax: false, exactTopN: 5, graddrop: true });
    const softmax = screen.getByLabelText("AtP* softmax correction") as HTMLInputElement;
    expect(softmax.disabled).toBe(true);
    expect(softmax.parentElement!.getAttribute("title")).toMatch(/log-probability losses only/);
    cleanup();
    render(<Controls seen={seen} loss={{ kind: "log_prob", targets: [" Mary"] }} />);
    fireEvent.click(screen.getByLabelText("AtP* softmax correction"));
    expect(seen[seen.length - 1].softmax).toBe(true);
  });

  it("disable the measured options while tracing, saying why", () => {
    const trace: DebuggerState["trace"] = { node: { kind: "mlp_neuron", layer: 1, index: 2, position: 3, key_position: null, sae: null },
      through: "pre", downstream: null };
    render(<Controls seen={[]} trace={trace} />);
    for (const label of ["exact ablation for the top N rows", "GradDrop"]) {
      const input = screen.getByLabelText(label) as HTMLInputElement;
      expect(input.disabled).toBe(true);
      expect(input.closest("label")!.getAttribute("title")).toMatch(/Not while tracing/);
    }
    expect((screen.getByLabelText("estimate") as HTMLSelectElement).disabled).toBe(false);
  });

  it("cost and meaning are in every tooltip", () => {
    render(<Controls seen={[]} />);
    const tip = (label: string) => screen.getByLabelText(label).closest("label")!.getAttribute("title")!;
    expect(tip("estimate")).toMatch(/live \(the default\).*frozen.*Both cost the same/);
    expect(tip("AtP* softmax correction")).toMatch(/Cost: one more batched pass/);
    expect(tip("exact ablation for the top N rows")).toMatch(/Cost: one more forward pass of N batch rows per prompt/);
    expect(tip("GradDrop")).toMatch(/Cost: one more batched pass of n_layers rows per prompt/);
  });

  it("clamp a typed row count to [0, max]", () => {
    expect(clampRows("7", 200)).toBe(7);
    expect(clampRows("7.9", 200)).toBe(7);
    expect(clampRows("999", 200)).toBe(200);
    expect(clampRows("-2", 200)).toBe(0);
    expect(clampRows("", 200)).toBe(0);
    expect(clampRows("abc", 200)).toBe(0);
  });
});
