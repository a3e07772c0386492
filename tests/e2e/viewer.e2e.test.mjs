// End-to-end test of the neuron viewer in a real browser (Debian's Chromium driven by
// playwright-core) against a live `mechscope serve` that this file starts on 127.0.0.1 and stops.
//
//   cd neuron_viewer && npm ci && npm run build && cd .. && node --test tests/e2e/
//
// Environment: MECHSCOPE_PYTHON (default .venv/bin/python, else python3) runs the server;
// MECHSCOPE_E2E_MODEL (default: the shipped organism; "tiny": a random checkpoint this test writes) is its --model;
// CHROMIUM (default /usr/bin/chromium). Screenshots of each step go to artifacts/e2e/.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium, CHROMIUM, CHROMIUM_FLAGS, freePort, python, REPO, VIEWER, waitFor, sortTimes } from "./support.mjs";

const SHOTS = join(REPO, "artifacts", "e2e");
const PROMPT = "When Mary and John went to the store, John gave a drink to";
const LOSS = { kind: "logit_diff", targets: [" Mary"], distractors: [" John"] };

let server, serverLog = "", base, browser, page, tmp, datasetLoaded = false;

async function api(path, body) {
  const r = await fetch(`${base}/api/v1${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, `${path}: ${await r.clone().text()}`);
  return r.json();
}

const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const fmt4 = (x) => x.toFixed(4);
const searchParams = () => new URL(page.url()).searchParams;

before(async () => {
  assert.ok(existsSync(join(VIEWER, "dist", "index.html")), "build the viewer first: cd neuron_viewer && npm run build");
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), "mechscope-e2e-"));
  let model = process.env.MECHSCOPE_E2E_MODEL || "organism";  // the shipped model, as a person meets it
  if (model === "tiny") {
    model = join(tmp, "tiny");
    execFileSync(python(), [join(REPO, "tests", "e2e", "make_tiny_checkpoint.py"), model], { stdio: "inherit" });
  }
  // The organism gets its node dataset (built here, ~30 s), so node pages show real examples.
  const datasetArgs = [];
  if (model === "organism") {
    execFileSync(python(), ["-m", "mechscope.activation_server.cli", "datasets", "ensure-organism", "--out",
      join(tmp, "datasets"), "--rows", "600", "--quiet"], { stdio: "inherit" });
    datasetArgs.push("--datasets", join(tmp, "datasets", "organism"));
    datasetLoaded = true;
  }
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(python(), ["-m", "mechscope.activation_server.cli", "serve", "--model", model, "--no-saes", ...datasetArgs,
    "--host", "127.0.0.1", "--port", String(port), "--viewer-dir", join(VIEWER, "dist"), "--workers", "1",
    "--log-level", "warning"], { stdio: ["ignore", "pipe", "pipe"] });
  server.stdout.on("data", (d) => { serverLog += d; });
  server.stderr.on("data", (d) => { serverLog += d; });
  await waitFor(`${base}/readyz`, 200, 120_000, server);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => { const t = setTimeout(() => { server.kill("SIGKILL"); r(); }, 10_000); server.on("exit", () => { clearTimeout(t); r(); }); });
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (process.exitCode) console.error(serverLog.slice(-4000));
});

describe("neuron viewer against a live mechscope serve", () => {
  let lossText;

  it("runs an IOI prompt: the node table lists heads and the loss the API computes", async () => {
    await page.goto(base + "/");
    await page.getByLabel("prompt", { exact: true }).fill(PROMPT);
    await page.getByLabel("add targets").fill(" Mary");
    await page.getByLabel("add targets").press("Enter");
    await page.getByLabel("add distractors").fill(" John");
    await page.getByLabel("add distractors").press("Enter");
    // the tokenizer preview of the target is shown
    await page.getByTestId("token-chip").first().getByText("·Mary:").waitFor();
    await page.getByRole("button", { name: "Run" }).click();
    await page.getByTestId("loss").waitFor();
    const expected = await api("/attribution", { prompts: [{ text: PROMPT, interventions: [] }], loss: LOSS, mlp: "neurons", attention: "heads", trace: null, top_k: 20 });
    lossText = await page.getByTestId("loss").textContent();
    assert.equal(lossText, fmt4(expected.prompts[0].loss));
    const keys = await page.locator("[data-row-index]").evaluateAll((rows) => rows.map((r) => r.dataset.key));
    assert.ok(keys.some((k) => k.startsWith("attn_head")), `no head rows among ${keys.slice(0, 5)}`);
    assert.equal(keys[0], [...expected.nodes].sort((a, b) => Math.abs(b.values[0].total_effect) - Math.abs(a.values[0].total_effect))[0].key);
    await shot("1-ioi-node-table");
  });

  it("ablating the top node changes the loss to what the API returns for that ablation", async () => {
    await page.locator('[data-row-index="0"]').getByRole("button", { name: "0", exact: true }).click();
    await page.getByTestId("loss-before").waitFor();
    const interventions = JSON.parse(searchParams().get("iv"));
    assert.equal(interventions.length, 1);
    assert.equal(interventions[0].mode, "zero");
    const expected = await api("/attribution", { prompts: [{ text: PROMPT, interventions }], loss: LOSS, mlp: "neurons", attention: "heads", trace: null, top_k: 20 });
    await page.waitForFunction((want) => document.querySelector('[data-testid="loss"]')?.textContent === want, fmt4(expected.prompts[0].loss));
    assert.notEqual(fmt4(expected.prompts[0].loss), lossText, "the ablation did not change the loss");
    await page.getByTestId("loss-before").getByText(lossText).waitFor(); // the loss before the change
    await shot("2-ablated");
  });

  it("tracing a head through its key updates the table", async () => {
    // a head in the last layer (found with the table's search), so that heads are upstream of it
    await page.getByLabel("search nodes").fill("L1.H");
    await page.locator('[data-row-index="0"][data-key^="attn_head:L1:"]').getByRole("button", { name: "k", exact: true }).click();
    await page.getByLabel("search nodes").fill("");
    await page.getByTestId("trace-banner").waitFor();
    const trace = JSON.parse(searchParams().get("trace"));
    assert.equal(trace.through, "k");
    assert.equal(trace.node.kind, "attn_head");
    const interventions = JSON.parse(searchParams().get("iv"));
    const expected = await api("/attribution", { prompts: [{ text: PROMPT, interventions }], loss: LOSS, mlp: "neurons", attention: "heads", trace, top_k: 20 });
    await page.getByText(expected.explained, { exact: true }).waitFor();
    await page.waitForFunction((want) => document.querySelector('[data-row-index="0"]')?.dataset.key === want,
      [...expected.nodes].sort((a, b) => Math.abs(b.values[0].total_effect) - Math.abs(a.values[0].total_effect))[0].key);
    await shot("3-trace-key");
  });

  let debuggerUrl;
  it("a copied URL reproduces the same view after a reload", async () => {
    debuggerUrl = page.url();
    const before = await page.locator("[data-row-index]").evaluateAll((rows) => rows.map((r) => r.textContent));
    const loss = await page.getByTestId("loss").textContent();
    const fresh = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await fresh.goto(debuggerUrl);
    await fresh.getByTestId("trace-banner").waitFor();
    await fresh.waitForFunction((want) => document.querySelector('[data-testid="loss"]')?.textContent === want, loss);
    const after = await fresh.locator("[data-row-index]").evaluateAll((rows) => rows.map((r) => r.textContent));
    assert.deepEqual(after, before);
    await fresh.screenshot({ path: join(SHOTS, "4-reloaded.png"), fullPage: true });
    await fresh.close();
  });

  it("opens a node page: top examples with highlighted tokens and live activations on the prompt", async () => {
    await page.getByLabel("search nodes").fill("L0.H");
    await page.locator('[data-row-index="0"][data-key^="attn_head:L0:"]').getByRole("button", { name: "page", exact: true }).click();
    await page.getByTestId("node-title").waitFor();
    assert.equal(searchParams().get("view"), "node");
    if (datasetLoaded) {
      const top = page.getByLabel("top-activating examples");
      await top.locator(".tok.hot").first().waitFor();
      assert.ok(await top.locator(".tok.hot").count() > 0, "no highlighted tokens in the top examples");
    } else {
      const notice = page.getByTestId("no-dataset");
      await notice.waitFor();
      assert.match(await notice.textContent(), /no node datasets are loaded/);
    }
    await page.getByLabel("live activations").locator(".token-heatmap .tok.hot").first().waitFor();
    const title = await page.getByTestId("node-title").textContent();
    assert.match(title, /^layer 0 head \d$/);
    await page.keyboard.press("ArrowDown"); // next layer, same head
    await page.waitForFunction((t) => document.querySelector('[data-testid="node-title"]')?.textContent === t, title.replace("layer 0", "layer 1"));
    assert.equal(searchParams().get("layer"), "1");
    await page.getByLabel("live activations").locator(".token-heatmap .tok.hot").first().waitFor();
    await shot("5-node-page");
    await page.goBack();
    await page.goBack();
    await page.getByTestId("trace-banner").waitFor();
  });

  it("compares two prompts, sweeps patching (click a cell: the table shows that head) and draws the graph", async () => {
    const corrupted = "When Mary and John went to the store, Mary gave a drink to";
    const q = (o) => Object.entries(o).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
    await page.goto(`${base}/?${q({ prompt: PROMPT, prompt2: corrupted, target: " Mary", distractor: " John", panel: "sweep" })}`);
    await page.locator('[data-sort="total_effect.diff"]').waitFor();
    const sweep = await api("/patching/sweep", { clean: PROMPT, corrupted, loss: LOSS, kind: "heads" });
    await page.locator("table.heatmap td").first().waitFor();
    assert.equal(await page.locator("table.heatmap tbody tr").count(), sweep.values.length);
    await shot("6-sweep");
    // the head whose patching restores the most: it is among the table's top nodes
    let best = [0, 0];
    sweep.values.forEach((row, l) => row.forEach((v, h) => {
      if (v !== null && Math.abs(v) > Math.abs(sweep.values[best[0]][best[1]] ?? 0)) best = [l, h];
    }));
    const label = `L${best[0]}.H${best[1]}`;
    await page.locator(`table.heatmap td[data-cell="${best[0]},${best[1]}"]`).click();
    await page.getByTestId("loss").waitFor();
    assert.equal(searchParams().get("q"), label);
    await page.locator("[data-row-index] .nt-name").first().waitFor();
    const names = await page.locator("[data-row-index] .nt-name").allTextContents();
    assert.ok(names.length > 0 && names.every((n) => n === label), `rows after the click: ${names}`);
    await page.getByRole("button", { name: "circuit graph" }).click();
    const graph = await api("/graph", { prompt: PROMPT, loss: LOSS, mlp: "neurons", attention: "heads" });
    await page.locator("svg.graph g.graph-node").first().waitFor();
    assert.equal(await page.locator("svg.graph g.graph-node").count(), graph.nodes.length);
    await shot("7-graph");
    await page.locator("svg.graph g.graph-node.link").first().click();
    await page.getByTestId("node-title").waitFor();
  });

  it("shows the server's 422 message, not a bare 'Error'", async () => {
    await page.goto(`${base}/?prompt=${encodeURIComponent(PROMPT)}&target=${encodeURIComponent(" Mary")}&distractor=${encodeURIComponent(" John")}&k=100000`);
    const alert = page.getByRole("alert").filter({ hasText: "attribution failed" });
    await alert.waitFor();
    assert.match(await alert.textContent(), /HTTP 422\): top_k: .+/);
    await shot("8-error-422");
  });

  it("sorts a 10,000-row node table in under 200 ms", async () => {
    await page.goto(`${base}/?view=synthetic&rows=10000`);
    await page.getByTestId("row-count").getByText("10000 of 10000 nodes").waitFor();
    const times = await sortTimes(page);
    console.log(`sort times for 10,000 rows (ms): ${times.map((t) => t.toFixed(1)).join(", ")}`);
    await page.locator('[data-testid="virtual-rows"]').evaluate((el) => { el.scrollTop = 24 * 5000; });
    await page.locator('[data-row-index="5000"]').waitFor();
    await shot("9-synthetic-10k");
    assert.ok(Math.max(...times) < 200, `a sort took ${Math.max(...times).toFixed(1)} ms`);
  });
});
