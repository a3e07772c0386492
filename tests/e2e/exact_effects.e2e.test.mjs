// End-to-end check of the node table's estimate options (issue 23) in Chromium against a live
// `mechscope serve` on the shipped organism: exact ablations of the top N rows set in the UI show
// the server's exact effects, and the frozen estimate changes the request and the total header's note.
// Screenshots go to artifacts/e2e-exact/.
//
//   cd neuron_viewer && npm run build && cd .. && node --test tests/e2e/exact_effects.e2e.test.mjs
//
// MECHSCOPE_E2E_VIEWER_DIST: the built viewer to serve (default neuron_viewer/dist).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { apiPost, CHROMIUM, launchBrowser, REPO, startServer, VIEWER } from "./support.mjs";

const SHOTS = join(REPO, "artifacts", "e2e-exact");
const VIEWER_DIST = process.env.MECHSCOPE_E2E_VIEWER_DIST ?? join(VIEWER, "dist");
const IOI = "When Mary and John went to the store, John gave a drink to";
const LOSS = { kind: "logit_diff", targets: [" Mary"], distractors: [" John"] };
const N = 5;

let server, browser, page;

const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const params = () => new URL(page.url()).searchParams;
const attribution = (extra) => apiPost(server.base, "/attribution", {
  prompts: [{ text: IOI, interventions: [] }], loss: LOSS, mlp: "neurons", attention: "heads", trace: null, top_k: 20, ...extra,
});
const formatNumber = (v, digits = 3) => {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(digits);
};
/** Clicks Run and returns the body of the attribution request it sends, once its answer is on screen. */
async function run() {
  const answered = page.waitForResponse((r) => r.url().endsWith("/api/v1/attribution") && r.request().method() === "POST");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  const response = await answered;
  assert.equal(response.status(), 200, await response.text());
  await page.locator('[data-row-index="0"]').waitFor();
  await page.waitForFunction(() => !document.querySelector(".stale"));
  return response.request().postDataJSON();
}
/** The exact column's cells on screen: [row key, text, full-precision value from the tooltip or null]. */
const exactCells = () => page.locator('[data-row-index] [data-col="exact_effect.left"]').evaluateAll((els) =>
  els.map((c) => [c.closest("[data-key]").dataset.key, c.textContent, c.title ? Number(c.title.split(" ")[1]) : null]));

before(async () => {
  assert.ok(existsSync(join(VIEWER_DIST, "index.html")), "build the viewer first: cd neuron_viewer && npm run build");
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer({ args: ["--no-saes", "--workers", "1", "--compute-processes", "0"], viewerDir: VIEWER_DIST });
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(60_000);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (process.exitCode && server) console.error(server.log().slice(-4000));
});

describe("estimate options of the node table (issue 23)", () => {
  it(`exact ablation of the top ${N} rows set in the UI shows the server's exact effects; frozen changes the request and the note`, async () => {
    await page.goto(`${server.base}/`);
    await page.getByLabel("prompt", { exact: true }).fill(IOI);
    await page.getByLabel("add targets").fill(" Mary");
    await page.getByLabel("add targets").press("Enter");
    await page.getByLabel("add distractors").fill(" John");
    await page.getByLabel("add distractors").press("Enter");
    // the defaults: live, nothing measured, and no exact column
    assert.equal(await page.getByLabel("estimate", { exact: true }).inputValue(), "live");
    assert.ok(await page.getByLabel("AtP* softmax correction").isDisabled(), "a logit difference has no output softmax to correct");
    await page.getByLabel("exact ablation for the top N rows").fill(String(N));
    const sent = await run();
    assert.equal(sent.exact_top_n, N);
    for (const key of ["total_effect_ln", "total_effect_softmax", "graddrop"]) assert.ok(!(key in sent), `${key} sent at its default`);
    assert.equal(params().get("exact"), String(N));
    assert.equal(params().get("ln"), null);

    // the exact column sits next to total; sorted by it, the measured rows come first
    const headers = await page.locator("[data-sort]").evaluateAll((els) => els.map((e) => e.dataset.sort));
    assert.equal(headers[headers.indexOf("total_effect.left") + 1], "exact_effect.left", `columns: ${headers}`);
    const liveNote = await page.locator('[data-sort="total_effect.left"]').getAttribute("title");
    assert.match(liveNote, /live final LayerNorm \(as requested; the default\).*Live is the default because it ranks nodes the way ablating them does/);
    await page.locator('[data-sort="exact_effect.left"]').click();
    await page.waitForFunction(() => new URL(location.href).searchParams.get("sort")?.startsWith("exact_effect.left"));
    const cells = await exactCells();
    const measured = cells.filter(([, text]) => text !== "");
    assert.equal(measured.length, N, `exact cells: ${JSON.stringify(cells)}`);
    assert.ok(measured.every(([, text]) => Number.isFinite(Number(text))), `not numbers: ${JSON.stringify(measured)}`);
    assert.deepEqual(cells.slice(0, N), measured, "the measured rows sort first");

    // the same request fetched directly: the same N rows with the same exact effects
    const want = await attribution({ exact_top_n: N });
    const wanted = new Map(want.nodes.filter((n) => n.values[0]?.exact_effect != null).map((n) => [n.key, n.values[0].exact_effect]));
    assert.equal(wanted.size, N);
    for (const [key, text, full] of measured) {
      assert.ok(wanted.has(key), `${key} has an exact effect on screen but not from the API`);
      assert.ok(Math.abs(full - wanted.get(key)) <= 1e-4, `${key}: ${full} on screen vs ${wanted.get(key)} from the API`);
      assert.equal(text, formatNumber(wanted.get(key)));
    }
    await shot("exact-top-5-live");

    // frozen: the request says so, the URL keeps it, and the total header's note names it
    await page.getByLabel("estimate", { exact: true }).selectOption("frozen");
    const frozen = await run();
    assert.equal(frozen.total_effect_ln, "frozen");
    assert.equal(frozen.exact_top_n, N);
    assert.equal(params().get("ln"), "frozen");
    await page.waitForFunction(() => /as requested: frozen/.test(document.querySelector('[data-sort="total_effect.left"]')?.title ?? ""));
    const frozenNote = await page.locator('[data-sort="total_effect.left"]').getAttribute("title");
    assert.notEqual(frozenNote, liveNote);
    assert.match(frozenNote, /final LayerNorm scale held constant \(as requested: frozen, TDB's convention\)/);
    // and the table is the frozen answer's: its exact rows and values
    const wantFrozen = await attribution({ exact_top_n: N, total_effect_ln: "frozen" });
    const frozenWanted = new Map(wantFrozen.nodes.filter((n) => n.values[0]?.exact_effect != null).map((n) => [n.key, n.values[0].exact_effect]));
    const frozenCells = (await exactCells()).filter(([, text]) => text !== "");
    assert.equal(frozenCells.length, N);
    for (const [key, , full] of frozenCells) assert.ok(Math.abs(full - frozenWanted.get(key)) <= 1e-4, `${key}: ${full} vs ${frozenWanted.get(key)}`);
    await shot("exact-top-5-frozen");
  });
});
