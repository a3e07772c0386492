// End-to-end test of node explanations in the neuron viewer: Debian's Chromium (playwright-core)
// against a live `mechscope serve` on the organism that this file starts on 127.0.0.1 and stops.
// It builds a small organism dataset, explains the attribution's top nodes through the API
// ("explain this node now"), writes one explanation file in TDB's public layout
// (explanations/{layer}/{neuron}.jsonl of NeuronSimulationResults), then checks in the browser:
// the node table's explanation column, search by explanation text, and the node page's list
// (with the TDB file's explanation) and its "explain this node now" button.
//
//   cd neuron_viewer && npm ci && npm run build && cd .. && node --test tests/e2e/explanations.e2e.test.mjs
//
// Environment: MECHSCOPE_PYTHON (default .venv/bin/python, else python3); CHROMIUM (default
// /usr/bin/chromium). Screenshots go to artifacts/e2e-explanations/.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CHROMIUM, REPO, VIEWER, launchBrowser, python, startServer } from "./support.mjs";

const SHOTS = join(REPO, "artifacts", "e2e-explanations");
const PROMPT = "When Mary and John went to the store, John gave a drink to";
const LOSS = { kind: "logit_diff", targets: [" Mary"], distractors: [" John"] };
const TDB_TEXT = "years in the 1700s, from a TDB file";

let server, base, browser, page, tmp, datasetDir, nodes, tdbNeuron;

async function api(path, body) {
  const r = await fetch(`${base}/api/v1${path}`, body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, `${path}: ${await r.clone().text()}`);
  return r.json();
}

const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

function tdbLine(layer, index) {
  const seq = { dataclass_name: "ScoredSequenceSimulation",
    sequence_simulation: { dataclass_name: "SequenceSimulation", tokens: [" in", " 17"], expected_activations: [0, 9],
      activation_scale: "simulated_normalized_activations", distribution_values: [[0], [9]],
      distribution_probabilities: [[1], [1]], uncalibrated_simulation: null },
    true_activations: [0, 2.5], ev_correlation_score: 1, rsquared_score: 0.5, absolute_dev_explained_score: 0.4 };
  return JSON.stringify({ dataclass_name: "NeuronSimulationResults",
    neuron_id: { dataclass_name: "NeuronId", layer_index: layer, neuron_index: index },
    scored_explanations: [{ dataclass_name: "ScoredExplanation", explanation: TDB_TEXT,
      scored_simulation: { dataclass_name: "ScoredSimulation", scored_sequence_simulations: [seq],
        ev_correlation_score: 0.73, rsquared_score: 0.3, absolute_dev_explained_score: 0.2 } }] }) + "\n";
}

before(async () => {
  assert.ok(existsSync(join(VIEWER, "dist", "index.html")), "build the viewer first: cd neuron_viewer && npm run build");
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), "mechscope-e2e-expl-"));
  execFileSync(python(), ["-m", "mechscope.activation_server.cli", "datasets", "ensure-organism", "--out",
    join(tmp, "datasets"), "--rows", "300", "--quiet"], { stdio: "inherit" });
  datasetDir = join(tmp, "datasets", "organism");
  server = await startServer({ args: ["--no-saes", "--datasets", datasetDir, "--workers", "2"],
    env: { MECHSCOPE_LLM_BASE_URL: "" } });
  base = server.base;
  // the table's top nodes, explained now through the API (all but the last neuron, kept for the page's button)
  const result = await api("/attribution", { prompts: [{ text: PROMPT, interventions: [] }], loss: LOSS,
    mlp: "neurons", attention: "heads", trace: null, top_k: 20 });
  // one row per component (a component can appear at several positions)
  const seen = new Set();
  nodes = result.nodes.filter((n) => (n.kind === "mlp_neuron" || n.kind === "attn_head")
    && !seen.has(`${n.kind}:${n.layer}:${n.index}`) && seen.add(`${n.kind}:${n.layer}:${n.index}`));
  const neurons = nodes.filter((n) => n.kind === "mlp_neuron");
  assert.ok(neurons.length >= 2, "the table needs two neurons");
  tdbNeuron = neurons[0];
  mkdirSync(join(datasetDir, "explanations", String(tdbNeuron.layer)), { recursive: true });
  writeFileSync(join(datasetDir, "explanations", String(tdbNeuron.layer), `${tdbNeuron.index}.jsonl`),
    tdbLine(tdbNeuron.layer, tdbNeuron.index));
  for (const n of nodes.filter((x) => x !== neurons[neurons.length - 1])) {
    await api("/explanations/explain", { kind: n.kind, layer: n.layer, index: n.index });
  }
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (process.exitCode && server) console.error(server.log().slice(-4000));
});

describe("explanations in the neuron viewer", () => {
  it("the node table shows each node's best explanation, in full on hover, with its score", async () => {
    await page.goto(base + "/");
    await page.getByLabel("prompt", { exact: true }).fill(PROMPT);
    await page.getByLabel("add targets").fill(" Mary");
    await page.getByLabel("add targets").press("Enter");
    await page.getByLabel("add distractors").fill(" John");
    await page.getByLabel("add distractors").press("Enter");
    await page.getByRole("button", { name: "Run" }).click();
    await page.getByTestId("loss").waitFor();
    await page.getByRole("columnheader", { name: "explanation" }).waitFor();
    const keyOf = (n) => `${n.kind}:${n.layer}:${n.index}`;
    const lookup = await api("/explanations/lookup", { nodes: nodes.map((n) => ({ kind: n.kind, layer: n.layer, index: n.index })) });
    const head = nodes.find((n) => n.kind === "attn_head");
    const want = lookup.explanations[keyOf(head)];
    assert.ok(want && want.text, "the API has no explanation for the head");
    const cell = page.locator(`[data-key="${head.key}"] [data-col="explanation"]`).first();
    await cell.locator(".expl-text").waitFor();
    assert.equal(await cell.locator(".expl-text").textContent(), want.text);
    assert.equal(await cell.locator(".expl-score").textContent(), want.score.toFixed(2));
    assert.ok((await cell.getAttribute("title")).startsWith(want.text));
    const tdbCell = page.locator(`[data-key="${tdbNeuron.key}"] [data-col="explanation"] .expl-text`).first();
    await page.waitForFunction(([key]) => [...document.querySelectorAll(`[data-key="${key}"] [data-col="explanation"] .expl-text`)]
      .some((e) => e.textContent.length > 0), [tdbNeuron.key]);
    assert.ok((await tdbCell.textContent()).length > 0);
    await shot("1-explanation-column");
  });

  it("search by explanation text finds the TDB file's neuron and opens its page with every explanation", async () => {
    await page.getByLabel("search explanations").fill("1700s");
    const hit = page.getByLabel("explanation search results").locator(`li[data-key="mlp_neuron:${tdbNeuron.layer}:${tdbNeuron.index}"]`);
    await hit.waitFor();
    assert.match(await hit.textContent(), /years in the 1700s/);
    await shot("2-search");
    await hit.getByRole("button").click();
    await page.getByTestId("node-title").waitFor();
    const table = page.getByTestId("explanations");
    const tdbRow = table.locator('tr[data-explainer="tdb"]');
    await tdbRow.waitFor();
    assert.match(await tdbRow.textContent(), /years in the 1700s, from a TDB file/);
    assert.match(await tdbRow.textContent(), /0\.73/);
    const offline = table.locator('tr[data-explainer="offline"]');
    await offline.waitFor();
    const page_ = await api(`/explanations/mlp_neuron/${tdbNeuron.layer}/${tdbNeuron.index}`);
    const mine = page_.explanations.find((e) => e.explainer === "offline");
    assert.match(await offline.textContent(), new RegExp(mine.score.toFixed(2).replace(".", "\\.")));
    assert.ok((await offline.textContent()).includes(mine.method));
    await shot("3-node-page-explanations");
  });

  it("'explain this node now' explains a node that had none and shows it", async () => {
    const neurons = nodes.filter((n) => n.kind === "mlp_neuron");
    const last = neurons[neurons.length - 1];
    const before = await api(`/explanations/mlp_neuron/${last.layer}/${last.index}`);
    assert.deepEqual(before.explanations, []);
    const url = new URL(page.url());
    url.searchParams.set("layer", String(last.layer));
    url.searchParams.set("index", String(last.index));
    await page.goto(url.toString());
    const table = page.getByTestId("explanations");
    await table.getByText("no explanation yet").waitFor();
    await page.getByTestId("explain-offline").click();
    const row = table.locator('tr[data-explainer="offline"]');
    await row.waitFor();
    const afterwards = await api(`/explanations/mlp_neuron/${last.layer}/${last.index}`);
    assert.equal(afterwards.explanations.length, 1);
    assert.ok((await row.textContent()).includes(afterwards.explanations[0].method));
    await shot("4-explained-now");
  });
});
