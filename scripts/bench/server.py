"""Latency and throughput of TDB attribution requests against a running activation server.

    mechscope serve &                                     # in another shell
    python scripts/bench/server.py --url http://127.0.0.1:8000 --concurrency 1 8

Each request ablates a different MLP neuron (so the server's cache of identical requests does not
answer it) on the IOI prompt and its corrupted twin, like the viewer's main view. Prints p50/p99
latency and requests/s per concurrency level; 503s (server busy) are counted, not timed. Each
client is its own process with its own connection, sending its next request when it has the
answer to the last (a closed loop, like a person at the viewer, only faster).
Run it only when nothing else uses the cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import httpx

IOI = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


def attribution_body(i: int, n_layer: int, d_mlp: int, top_k: int) -> dict:
    node = {"kind": "mlp_neuron", "layer": i % n_layer, "index": (i * 97) % d_mlp, "position": -1}
    return {"prompts": [{"text": IOI, "interventions": [{"node": node, "mode": "zero"}]}, {"text": IOI_CORRUPTED}],
            "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": top_k}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _client(url: str, headers: dict, warmup: list[dict], bodies: list[dict], start_at: float
            ) -> tuple[list[float], int, int, float, float]:
    """One client: its own connection, requests one after another, the ``warmup`` ones untimed;
    (latencies of the 200s, 503s, errors, start and end of the timed requests)."""
    latencies, busy, errors = [], 0, 0
    with httpx.Client(base_url=url, timeout=600) as http:
        http.get("/healthz")                       # connect before the clock starts
        time.sleep(max(0.0, start_at - time.time()))
        for body in warmup:
            http.post("/api/v1/attribution", json=body, headers=headers)
        began = time.time()
        for body in bodies:
            start = time.perf_counter()
            r = http.post("/api/v1/attribution", json=body, headers=headers)
            elapsed = time.perf_counter() - start
            if r.status_code == 200:
                latencies.append(elapsed)
            elif r.status_code == 503:
                busy += 1
            else:
                errors += 1
    return latencies, busy, errors, began, time.time()


def run_level(url: str, headers: dict, concurrency: int, n: int, warmup: int, offset: int, info: dict,
              top_k: int) -> dict:
    """``concurrency`` clients, each a separate process (as separate users are: clients that are
    threads of one Python process would queue for its interpreter lock and add that wait to the
    latencies they measure), sharing ``n`` timed requests after ``warmup`` untimed ones each."""
    cfg = info["model"]
    bodies = [attribution_body(offset + i, cfg["n_layer"], cfg["d_mlp"], top_k) for i in range(n + concurrency * warmup)]
    warm, timed = bodies[n:], bodies[:n]
    start_at = time.time() + 1.0 + 0.05 * concurrency
    with ProcessPoolExecutor(concurrency, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_client, url, headers, warm[c * warmup:(c + 1) * warmup], timed[c::concurrency], start_at)
                   for c in range(concurrency)]
        results = [f.result() for f in futures]
    wall = max(r[4] for r in results) - min(r[3] for r in results)
    latencies = [x for r in results for x in r[0]]
    busy, errors = sum(r[1] for r in results), sum(r[2] for r in results)
    ok = len(latencies)
    return {"concurrency": concurrency, "ok": ok, "busy_503": busy, "errors": errors,
            "p50_ms": 1000 * statistics.median(latencies) if ok else float("nan"),
            "p99_ms": 1000 * percentile(latencies, 99) if ok else float("nan"), "req_per_s": ok / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=None, help="bearer token, if the server needs one")
    parser.add_argument("--requests", type=int, default=500,
                        help="requests per concurrency level (default 500: p99 is then the 5th worst, not the 2nd)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed requests each client sends first (default 2: its connection and the server's "
                             "batching of concurrent clients settle; the 8 clients all start at the same instant)")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    info = httpx.get(f"{args.url}/api/v1/info", headers=headers, timeout=30).raise_for_status().json()
    print(f"model {info['model']['name']}: {info['model']['n_layer']} layers, d_model {info['model']['d_model']}; "
          f"{len(info['saes'])} SAEs")
    offset = 0
    print(f"{'clients':>7} {'ok':>5} {'503':>5} {'err':>5} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>7}")
    levels = {}
    for c in args.concurrency:
        r = run_level(args.url, headers, c, args.requests, args.warmup, offset, info, args.top_k)
        offset += args.requests + c * args.warmup
        levels[c] = r
        print(f"{c:>7} {r['ok']:>5} {r['busy_503']:>5} {r['errors']:>5} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
              f"{r['req_per_s']:>7.2f}")
    if 1 in levels and len(levels) > 1:
        base = levels[1]["p50_ms"]
        for c, r in levels.items():
            if c != 1:
                ratio = r["p99_ms"] / base
                print(f"p99({c} clients) / p50(1 client) = {ratio:.2f} (target <= 3): {'PASS' if ratio <= 3 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
