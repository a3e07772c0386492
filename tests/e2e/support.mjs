// Shared set-up of the viewer's end-to-end tests: a live `mechscope serve` on 127.0.0.1 (a free
// port; stopped by the caller), Debian's Chromium through playwright-core, and small helpers.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const VIEWER = join(REPO, "neuron_viewer");
const require = createRequire(join(VIEWER, "package.json"));
export const { chromium } = require("playwright-core");

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];

export function python() {
  if (process.env.MECHSCOPE_PYTHON) return process.env.MECHSCOPE_PYTHON;
  const venv = join(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor(url, status, timeoutMs, proc) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mechscope serve exited with ${proc.exitCode}`);
    try {
      const r = await fetch(url);
      if (r.status === status) return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Starts `mechscope serve` with `args` (after --model) and waits for /readyz. Returns
 * { base, log(), stop() }. */
export async function startServer({ model = "organism", args = [], viewerDir = join(VIEWER, "dist"), env = {} } = {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let log = "";
  const proc = spawn(python(), ["-m", "mechscope.activation_server.cli", "serve", "--model", model, ...args,
    "--host", "127.0.0.1", "--port", String(port), "--viewer-dir", viewerDir, "--log-level", "warning"],
  { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  proc.stdout.on("data", (d) => { log += d; });
  proc.stderr.on("data", (d) => { log += d; });
  await waitFor(`${base}/readyz`, 200, 120_000, proc);
  const stop = async () => {
    if (proc.exitCode !== null) return;
    proc.kill("SIGTERM");
    await new Promise((r) => { const t = setTimeout(() => { proc.kill("SIGKILL"); r(); }, 10_000); proc.on("exit", () => { clearTimeout(t); r(); }); });
  };
  return { base, proc, log: () => log, stop };
}

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
}

/** POST an API call and return its JSON (asserting 200). */
export async function apiPost(base, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, `${path}: ${await r.clone().text()}`);
  return r.json();
}

/** Milliseconds from clicking each metric's sort header to the re-sorted table being painted. */
export async function sortTimes(page) {
  const times = [];
  for (const column of ["activation.left", "direct_effect.left", "write_magnitude.left", "total_effect.left"]) {
    times.push(await page.evaluate(async (col) => {
      const first = () => document.querySelector('[data-row-index="0"]').dataset.key;
      const before = first();
      const t0 = performance.now();
      document.querySelector(`[data-sort="${col}"]`).click();
      while (first() === before) await new Promise((r) => setTimeout(r, 0));
      await new Promise((r) => requestAnimationFrame(() => r()));
      return performance.now() - t0;
    }, column));
  }
  return times;
}
