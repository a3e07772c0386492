// End-to-end tests of the viewer's round 2 (issue 20) in Chromium against a live `mechscope serve`
// on the shipped organism with its SAEs (no node datasets: node pages show live activations only).
// One check per bug of the issue (each fails on the viewer before the fix) and one per new panel;
// screenshots go to artifacts/e2e-round2/.
//
//   cd neuron_viewer && npm run build && cd .. && node --test tests/e2e/viewer_round2.e2e.test.mjs
//
// MECHSCOPE_E2E_VIEWER_DIST: the built viewer to serve (default neuron_viewer/dist), e.g. an older
// build to see these checks fail before the fixes.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { apiPost, CHROMIUM, launchBrowser, REPO, startServer, VIEWER, sortTimes } from "./support.mjs";

const SHOTS = join(REPO, "artifacts", "e2e-round2");
const VIEWER_DIST = process.env.MECHSCOPE_E2E_VIEWER_DIST ?? join(VIEWER, "dist");
const IOI = "When Mary and John went to the store, John gave a drink to";
const IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to";
const GT = "The war lasted from the year 1732 to the year 17";
const LOSS = { kind: "logit_diff", targets: [" Mary"], distractors: [" John"] };

let server, browser, page;

const q = (o) => Object.entries(o).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${k}=${encodeURIComponent(x)}`)).join("&");
const url = (o) => `${server.base}/?${q(o)}`;
const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const params = () => new URL(page.url()).searchParams;
const api = (path, body) => apiPost(server.base, path, body);
const showToken = (t) => t.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "⇥");
const formatNumber = (v, digits = 3) => {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(digits);
};
const formatProb = (p) => (p >= 1e-4 ? `${(100 * p).toFixed(2)}%` : p.toExponential(1));
const attribution = (text, interventions = [], extra = {}) => api("/attribution", {
  prompts: [{ text, interventions }], loss: LOSS, mlp: "neurons", attention: "heads", trace: null, top_k: 20, ...extra,
});
const waitLoss = (want) => page.waitForFunction((w) => document.querySelector('[data-testid="loss"]')?.textContent === w, want);
const attributionAlerts = () => page.getByRole("alert").filter({ hasText: "attribution failed" }).count();

before(async () => {
  assert.ok(existsSync(join(VIEWER_DIST, "index.html")), "build the viewer first: cd neuron_viewer && npm run build");
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  // the organism with its SAEs (both sites per layer, so latent labels can collide); one process
  server = await startServer({ args: ["--workers", "2", "--compute-processes", "0"], viewerDir: VIEWER_DIST });
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  page.setDefaultTimeout(30_000);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (process.exitCode && server) console.error(server.log().slice(-4000));
});

describe("bugs of issue 20", () => {
  it("head rows offer mean ablation of the whole head at the query (no 422), and a pair only zero", async () => {
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John" }));
    const head = page.locator('[data-row-index][data-key^="attn_head"]').first();
    await head.waitFor();
    await head.getByRole("button", { name: "μ", exact: true }).click();
    await page.getByTestId("loss-before").waitFor();
    const iv = JSON.parse(params().get("iv"));
    assert.equal(iv[0].mode, "mean");
    assert.equal(iv[0].node.key_position, null, "μ must act on the whole head at the query");
    const expected = await attribution(IOI, iv);
    await waitLoss(formatNumber(expected.prompts[0].loss, 4));
    assert.equal(await attributionAlerts(), 0);
    // the pair action is only "zero" and keeps the key position
    const row = page.locator('[data-row-index][data-key^="attn_head"]').first();
    await row.getByRole("button", { name: "zero-ablate pair" }).click();
    await page.waitForFunction(() => JSON.parse(new URL(location.href).searchParams.get("iv") ?? "[]").length === 2);
    const pair = JSON.parse(params().get("iv"))[1];
    assert.equal(pair.mode, "zero");
    assert.equal(typeof pair.node.key_position, "number");
    await waitLoss(formatNumber((await attribution(IOI, JSON.parse(params().get("iv")))).prompts[0].loss, 4));
    assert.equal(await attributionAlerts(), 0);
    await page.getByLabel("active interventions").getByText("(whole head at the query)").waitFor();
    await page.getByLabel("active interventions").getByText("(one query–key pair)").waitFor();
    await shot("bug1-head-actions");
  });

  it("a shared link with a failing intervention shows the error and the removable intervention", async () => {
    const bad = [{ node: { kind: "attn_head", layer: 1, index: 0, position: -1, key_position: 2 }, mode: "mean" }];
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John", iv: JSON.stringify(bad) }));
    await page.getByRole("alert").filter({ hasText: "attribution failed" }).waitFor();
    await shot("bug2-failing-intervention");
    await page.getByLabel("remove intervention 0").click();
    await waitLoss(formatNumber((await attribution(IOI)).prompts[0].loss, 4));
    assert.equal(params().get("iv"), null);
    assert.equal(await attributionAlerts(), 0);
  });

  it("compare mode fits the screen: total Δ and the actions are visible, no sideways scroll", async () => {
    await page.goto(url({ prompt: IOI, prompt2: IOI_CORRUPTED, target: " Mary", distractor: " John" }));
    const diff = page.locator('[data-sort="total_effect.diff"]');
    await diff.waitFor();
    await page.locator('[data-row-index="0"]').waitFor();
    const width = await page.evaluate(() => window.innerWidth);
    const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(scrollWidth <= width, `the page scrolls sideways (${scrollWidth} > ${width})`);
    const box = await diff.boundingBox();
    assert.ok(box.x + box.width <= width, `total Δ header ends at ${box.x + box.width} > ${width}`);
    const headRow = page.locator('[data-row-index][data-key^="attn_head"]').first();
    for (const name of ["patch", "page", "v"]) {
      const b = await headRow.getByRole("button", { name, exact: true }).boundingBox();
      assert.ok(b && b.x + b.width <= width, `action ${name} is off-screen`);
    }
    await shot("bug3-compare-fits");
  });

  it("latents of the attention and MLP SAEs of one layer get different labels (table and graph)", async () => {
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John", mlp: "latents", attn: "latents" }));
    await page.locator('[data-row-index][data-key^="sae_"]').first().waitFor();
    const rows = await page.locator('[data-row-index][data-key^="sae_"]').evaluateAll((els) =>
      els.map((r) => [r.dataset.key, r.querySelector(".nt-name").textContent]));
    assert.ok(rows.length > 0);
    for (const [key, name] of rows) {
      const site = key.includes("hook_attn_out") ? "attn" : "mlp";
      assert.match(name, new RegExp(`^L\\d+\\.${site}\\.(F\\d+|err)$`), `${key} is labelled ${name}`);
    }
    await shot("bug4-latent-labels");
    await page.getByRole("button", { name: "circuit graph" }).click();
    await page.locator("svg.graph g.graph-node").first().waitFor();
    const labels = await page.locator("svg.graph g.graph-node > text").allTextContents();
    assert.equal(new Set(labels).size, labels.length, `duplicate graph labels: ${labels}`);
  });

  it("a head's page says which value it shows: write norm by default, attention probability on request", async () => {
    await page.goto(`${server.base}/?view=node&kind=attn_head&layer=1&index=0&${q({ prompt: IOI })}`);
    const live = page.getByLabel("live activations");
    const toks = live.locator(".token-heatmap .tok");
    await toks.first().waitFor();
    const n = await toks.count();
    const component = { kind: "attn_head", layer: 1, index: 0, sae: null };
    const check = async (headValue, name) => {
      const want = await api("/nodes/activations", { component, prompts: [IOI], head_value: headValue });
      await toks.nth(0).hover();
      await toks.nth(n - 1).hover();
      const title = await toks.nth(2).getAttribute("title");
      const m = new RegExp(`${name} from the hovered query to this key: (\\S+)\\)`).exec(title);
      assert.ok(m, `tooltip does not name the ${name}: ${title}`);
      assert.ok(Math.abs(Number(m[1]) - want.prompts[0].matrix[n - 1][2]) < 2e-3, `${m[1]} vs ${want.prompts[0].matrix[n - 1][2]}`);
      return Number(m[1]);
    };
    await check("write_norm", "write norm");
    await page.getByLabel("head value").selectOption("attention_prob");
    await page.getByTestId("live-head-note").getByText("attention probability p(query → key)").waitFor();
    await page.waitForTimeout(300);
    const p = await check("attention_prob", "attention probability");
    assert.ok(p >= 0 && p <= 1);
    await shot("bug5-head-page-values");
  });

  it("bad node links, an empty prompt, a 961-token prompt and server paths all get a clear answer", async () => {
    await page.goto(`${server.base}/?view=node&kind=banana&layer=0&index=0`);
    const bad = page.getByTestId("bad-node");
    await bad.waitFor();
    assert.match(await bad.textContent(), /unknown node kind "banana"/);
    assert.equal(await page.getByTestId("node-title").count(), 0);
    await shot("bug6a-bad-node-link");

    await page.goto(`${server.base}/`);
    await page.getByRole("button", { name: "Run" }).click();
    await page.getByTestId("form-problem").getByText("the prompt is empty").waitFor();

    const long = Array(960).fill("word").join(" ");
    await page.getByLabel("prompt", { exact: true }).fill(long);
    await page.getByTestId("token-count").getByText("961 tokens").waitFor();
    await page.getByTestId("too-long").waitFor();
    const preview = await page.getByLabel("prompt tokens").boundingBox();
    assert.ok(preview.height <= 120, `the token preview is ${preview.height} px tall`);
    await shot("bug6b-long-prompt");

    // a node page's 404 carrying a server path (as a dataset's FileNotFoundError does)
    await page.route("**/api/v1/nodes/attn_head/0/0*", (route) => route.fulfill({ status: 404, contentType: "application/json",
      body: JSON.stringify({ detail: "no dataset holds attn_head 0/0: organism: [Errno 2] No such file or directory: '/srv/mechscope/data/datasets/organism/shards/attn_head-0.bin'" }) }));
    await page.goto(`${server.base}/?view=node&kind=attn_head&layer=0&index=0`);
    const notice = page.getByTestId("no-dataset");
    await notice.waitFor();
    const text = await notice.textContent();
    assert.ok(!text.includes("/srv/"), `a server path is shown: ${text}`);
    assert.ok(text.includes("…/attn_head-0.bin"));
    await page.unrouteAll();
  });

  it("greater-than by hand: a range of targets, no false space warnings, results stay near the top", async () => {
    await page.goto(url({ prompt: GT }));
    await page.getByLabel("add targets").fill("33..99");
    await page.getByLabel("add targets").press("Enter");
    await page.getByLabel("add distractors").fill("01..31");
    await page.getByLabel("add distractors").press("Enter");
    const targets = page.getByTestId("token-list-targets");
    assert.equal(await targets.getByTestId("token-chip").count(), 67);
    assert.equal(await page.getByTestId("token-list-distractors").getByTestId("token-chip").count(), 31);
    assert.equal(await page.getByRole("note").filter({ hasText: "no leading space" }).count(), 0);
    const run = await page.getByRole("button", { name: "Run" }).boundingBox();
    assert.ok(run.y < 450, `Run is ${run.y} px down`);
    await page.getByRole("button", { name: "Run" }).click();
    const expected = await api("/attribution", { prompts: [{ text: GT, interventions: [] }], mlp: "neurons", attention: "heads", trace: null, top_k: 20,
      loss: { kind: "logit_diff", targets: params().getAll("target"), distractors: params().getAll("distractor") } });
    await waitLoss(formatNumber(expected.prompts[0].loss, 4));
    const table = await page.getByLabel("node table").boundingBox();
    assert.ok(table.y < 900, `the node table starts ${table.y} px down`);
    await page.getByTestId("more-targets").getByText("of 98").waitFor();     // the predictions column stays short
    const predictions = await page.getByLabel("predictions prompt").boundingBox();
    assert.ok(predictions.height < 900, `the predictions table is ${predictions.height} px tall`);
    await shot("bug7-greater-than");
  });

  it("tokens the model never saw are flagged in the prompt preview and on target chips", async () => {
    await page.goto(`${server.base}/`);
    await page.getByLabel("prompt", { exact: true }).fill("Mary saw a green apple near the volcano");
    const warning = page.getByTestId("unseen-warning");
    await warning.waitFor();
    assert.match(await warning.textContent(), /never saw.*·volcano/);
    const unseen = await page.getByLabel("prompt tokens").locator(".tok.unseen").allTextContents();
    assert.ok(unseen.includes("·volcano") && !unseen.includes("·Mary"), `flagged: ${unseen}`);
    await page.getByLabel("add targets").fill(" volcano");
    await page.getByLabel("add targets").press("Enter");
    await page.getByTestId("token-chip").getByText("unseen token").waitFor();
    await page.getByLabel("add targets").fill(" Mary");
    await page.getByLabel("add targets").press("Enter");
    await page.getByTestId("token-chip").nth(1).getByText("·Mary:").waitFor();
    assert.equal(await page.getByTestId("token-chip").nth(1).getByText("unseen token").count(), 0);
    await shot("bug8-unseen-tokens");
  });
});

describe("new panels", () => {
  it("logit lens: per layer, the targets' probabilities the API computes and the top tokens", async () => {
    await page.goto(url({ prompt: "The capital of Texas is", target: " Austin", distractor: " Paris", panel: "lens" }));
    const rows = page.getByLabel("logit lens table").locator("tbody tr");
    await rows.first().waitFor();
    const want = await api("/logit-lens", { prompt: "The capital of Texas is", targets: [" Austin", " Paris"], top_k: 5 });
    assert.equal(await rows.count(), want.layers.length);
    const last = want.layers[want.layers.length - 1];
    const cell = await rows.nth(want.layers.length - 1).locator("td").nth(1).textContent();
    assert.ok(cell.startsWith(formatProb(last.target_probs[0])), `${cell} vs ${formatProb(last.target_probs[0])}`);
    await shot("panel-logit-lens");
  });

  it("head grid: direct effects per head as the API computes them; a click lists the head in the table", async () => {
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John", panel: "heads" }));
    const cells = page.getByLabel("head grid table").locator("td");
    await cells.first().waitFor();
    const grid = await api("/heads/grid", { prompt: IOI, loss: LOSS });
    assert.equal(await cells.count(), grid.direct_effect.flat().length);
    let best = [0, 0];
    grid.direct_effect.forEach((row, l) => row.forEach((v, h) => { if (Math.abs(v) > Math.abs(grid.direct_effect[best[0]][best[1]])) best = [l, h]; }));
    const cell = page.locator(`td[data-head="${best[0]},${best[1]}"]`);
    assert.equal(await cell.textContent(), grid.direct_effect[best[0]][best[1]].toFixed(2));
    await shot("panel-head-grid");
    await page.getByLabel("head grid metric").selectOption("ablation_effect");
    await page.locator('td[data-head="0,0"]').getByText(grid.ablation_effect[0][0].toFixed(2), { exact: true }).waitFor();
    await cell.click();
    await page.locator("[data-row-index] .nt-name").first().waitFor();
    const names = await page.locator("[data-row-index] .nt-name").allTextContents();
    assert.ok(names.every((x) => x === `L${best[0]}.H${best[1]}`), `rows after the click: ${names}`);
  });

  it("graph: budgets, legend, positions in labels, JSON/SVG export, click a node to open its page", async () => {
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John", panel: "graph", gn: "10", ge: "20" }));
    await page.locator("svg.graph g.graph-node").first().waitFor();
    const want = await api("/graph", { prompt: IOI, loss: LOSS, mlp: "neurons", attention: "heads", max_nodes: 10, max_edges: 20 });
    assert.equal(await page.locator("svg.graph g.graph-node").count(), want.nodes.length);
    assert.equal(await page.locator("svg.graph line").count(), want.edges.length);
    await page.getByTestId("graph-legend").waitFor();
    const labels = await page.locator("svg.graph g.graph-node > text").allTextContents();
    assert.ok(labels.filter((l) => / @\d+ "/.test(l)).length >= want.nodes.length - 1, `labels without positions: ${labels}`);
    const [json] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "export JSON" }).click()]);
    assert.equal(json.suggestedFilename(), "mechscope-graph.json");
    assert.equal(JSON.parse(readFileSync(await json.path(), "utf8")).graph.nodes.length, want.nodes.length);
    const [svg] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "export SVG" }).click()]);
    assert.match(readFileSync(await svg.path(), "utf8"), /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const [png] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "export PNG" }).click()]);
    assert.deepEqual([...readFileSync(await png.path()).subarray(1, 4)], [0x50, 0x4e, 0x47]);
    await shot("panel-graph");
    await page.getByLabel("node budget").fill("6");
    await page.getByRole("button", { name: "redraw" }).click();
    await page.waitForFunction(() => new URL(location.href).searchParams.get("gn") === "6");
    await page.waitForFunction(() => document.querySelectorAll("svg.graph g.graph-node").length <= 6);
    await page.locator("svg.graph g.graph-node.link").first().click();
    await page.getByTestId("node-title").waitFor();
  });

  it("path patching: the restored fraction the API computes", async () => {
    await page.goto(url({ prompt: IOI, prompt2: IOI_CORRUPTED, target: " Mary", distractor: " John", panel: "path" }));
    await page.getByLabel("sender heads").fill("L3.H0, L3.H1");
    await page.getByLabel("receiver input v").uncheck();
    await page.getByRole("button", { name: "patch paths" }).click();
    const fraction = page.getByTestId("path-fraction");
    await fraction.waitFor();
    const want = await api("/patching/path", { clean: IOI, corrupted: IOI_CORRUPTED, loss: LOSS, senders: [[3, 0], [3, 1]], receivers: [], receiver_inputs: ["q", "k"] });
    assert.equal(await fraction.textContent(), want.restored_fraction === null ? "undefined (clean = corrupted)" : formatNumber(want.restored_fraction));
    assert.deepEqual([params().get("snd"), params().get("pin")], ["L3.H0, L3.H1", "q,k"]);
    await page.getByLabel("receiver heads").fill("L9.H0");
    await page.getByRole("note").filter({ hasText: "layers" }).waitFor();
    await shot("panel-path-patching");
  });

  it("generation side by side: plain, with the zero-ablations, and steered at a chosen position", async () => {
    const { ids } = await api("/tokenize", { text: IOI, prepend_bos: true });
    const last = ids.length - 1;
    const iv = [{ node: { kind: "mlp_neuron", layer: 3, index: 412, position: last, key_position: null, sae: null }, mode: "zero" }];
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John", panel: "generate", iv: JSON.stringify(iv) }));
    const text = (id) => page.getByTestId(id).locator(".gen-text");
    const gen = async (interventions) => (await api("/generate", { prompts: [IOI], max_new_tokens: 20, temperature: 0, interventions })).completions[0].tokens.map(showToken).join("");
    await text("gen-plain").waitFor();
    assert.equal(await text("gen-plain").textContent(), await gen([]));
    await text("gen-interventions").waitFor();
    assert.equal(await text("gen-interventions").textContent(),
      await gen([{ component: { kind: "mlp_neuron", layer: 3, index: 412, sae: null }, action: "zero", scale: 0, positions: [last] }]));
    await page.getByLabel("steer node").fill("L3.mlp.F12");
    await page.getByLabel("steering alpha").fill("30");
    await page.getByLabel("steering positions").getByRole("button").nth(last).click();
    await page.getByTestId("gen-steered").getByText("× 30").waitFor();
    await text("gen-steered").waitFor();
    await page.waitForTimeout(300);
    assert.equal(await text("gen-steered").textContent(),
      await gen([{ component: { kind: "sae_latent", layer: 3, index: 12, sae: "blocks.3.hook_mlp_out" }, action: "steer", scale: 30, positions: [last] }]));
    await shot("panel-generate-steer");
    // the steering lives in the URL: a fresh tab shows the same steered continuation
    assert.deepEqual([params().get("steer"), params().get("alpha"), params().get("spos")], ["L3.mlp.F12", "30", String(last)]);
    const steeredText = await text("gen-steered").textContent();
    const fresh = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await fresh.goto(page.url());
    await fresh.getByTestId("gen-steered").locator(".gen-text").waitFor();
    assert.equal(await fresh.getByTestId("gen-steered").locator(".gen-text").textContent(), steeredText);
    await fresh.close();
    // a neuron row's "steer" action opens this panel on that neuron at its token
    await page.getByRole("button", { name: "node table" }).click();
    const neuron = page.locator('[data-row-index][data-key^="mlp_neuron"]').first();
    await neuron.waitFor();
    const name = await neuron.locator(".nt-name").textContent();
    await neuron.getByRole("button", { name: "steer", exact: true }).click();
    await page.getByTestId("gen-steered").getByText(`steered: ${name} × 30`).waitFor();
  });

  it("guided investigations load a planted task with its targets and note; group by type and the top-k note", async () => {
    await page.goto(`${server.base}/`);
    await page.getByLabel("guided investigation", { exact: true }).selectOption("greater-than");
    await page.getByTestId("guided-note").waitFor();
    assert.equal(params().getAll("target").length, 65);     // 33..99 without the unseen '40' and '80'
    assert.equal(await page.getByRole("note").filter({ hasText: "unseen token" }).count(), 0);
    await page.getByTestId("loss").waitFor();
    await shot("panel-guided-greater-than");
    await page.getByLabel("guided investigation", { exact: true }).selectOption("ioi");
    await page.getByLabel("head grid table").waitFor();
    await page.getByRole("button", { name: "node table" }).click();
    await page.locator('[data-row-index="0"]').waitFor();
    assert.equal(params().get("group"), "kind");
    const keys = await page.locator("[data-row-index]").evaluateAll((els) => els.map((r) => r.dataset.key));
    assert.ok(keys[0].startsWith("attn_head"), `not grouped: ${keys.slice(0, 12)}`);
    const want = await api("/attribution", { prompts: [{ text: IOI, interventions: [] }, { text: IOI_CORRUPTED, interventions: [] }], loss: LOSS,
      mlp: "neurons", attention: "heads", trace: null, top_k: 20 });
    assert.match(await page.getByTestId("topk-note").textContent(), new RegExp(`^top-k 20 → ${want.nodes.length} rows`));
    await page.getByLabel("group by type").uncheck();
    await page.waitForFunction(() => !new URL(location.href).searchParams.get("group"));
    // ungrouped, the largest |total effect| leads whatever its type (here a position embedding)
    const top = [...want.nodes].sort((a, b) => Math.abs(b.values[0].total_effect) - Math.abs(a.values[0].total_effect))[0];
    assert.ok(!top.key.startsWith("attn_head"));
    await page.waitForFunction((k) => document.querySelector('[data-row-index="0"]')?.dataset.key === k, top.key);
    await shot("panel-guided-ioi-table");
  });

  it("every column and control carries its glossary definition", async () => {
    await page.goto(url({ prompt: IOI, target: " Mary", distractor: " John" }));
    await page.locator('[data-row-index="0"]').waitFor();
    const titles = await page.locator("[data-sort]").evaluateAll((els) => els.map((e) => e.getAttribute("title")));
    assert.match(titles.find((t) => t.startsWith("direct")), /dotted with the gradient of the objective at the final residual stream/);
    assert.match(titles.find((t) => t.startsWith("total")), /first-order estimate of how much the objective would drop/);
    assert.match(titles.find((t) => t.startsWith("act")), /a head pair's attention probability/);
    assert.match(await page.getByRole("button", { name: "μ", exact: true }).first().getAttribute("title"), /its mean over a reference corpus/);
    assert.match(await page.getByLabel("add targets").locator("xpath=..").locator(".field-label").getAttribute("title"), /direction of interest/);
  });

  it("sorts a grouped 10,000-row table in under 200 ms", async () => {
    await page.goto(`${server.base}/?view=synthetic&rows=10000&group=kind`);
    await page.getByTestId("row-count").getByText("10000 of 10000 nodes").waitFor();
    const times = await sortTimes(page);
    console.log(`grouped sort times for 10,000 rows (ms): ${times.map((t) => t.toFixed(1)).join(", ")}`);
    assert.ok(Math.max(...times) < 200, `a sort took ${Math.max(...times).toFixed(1)} ms`);
  });
});
