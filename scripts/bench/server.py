"""Latency and throughput of TDB attribution requests against a running activation server.

    mechscope serve &                                     # in another shell
    python scripts/bench/server.py --url http://127.0.0.1:8000 --concurrency 1 8

Each request ablates a different MLP neuron at one position (so the server's cache of identical
requests does not answer it, in this run or the next) on the IOI prompt and its corrupted twin,
like the viewer's main view. Prints p50/p99 latency and requests/s per concurrency level; 503s
(server busy) are counted, not timed. Each client is its own process with its own connection,
sending its next request when it has the answer to the last (a closed loop, like a person at the
viewer, only faster). The client processes start once, before the first round: started per round,
8 interpreters starting up took the server's cores for a second at the start of each round.

The levels take turns (``--rounds``, default 5: 1 client, 8 clients, 1 client, ...), each round a
share of the requests, and each level's figures pool its rounds: a machine whose speed drifts (a
shared VM's does, by a third within minutes) then slows both sides of the p99/p50 ratio alike,
instead of whichever level happened to run in a slow spell. Each round's own ratio is printed too.
Run it only when nothing else uses the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor

IOI = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


ABLATED_POSITIONS = 14      # the IOI prompt's tokens after <|endoftext|>


def attribution_body(i: int, n_layer: int, d_mlp: int, top_k: int, extra: dict | None = None) -> dict:
    """The ``i``-th benchmark request: it zeroes one MLP neuron at one position, the ``i``-th of
    n_layer × d_mlp × 14 (every one of them in turn: neighbours differ in layer, then neuron)."""
    i %= n_layer * d_mlp * ABLATED_POSITIONS
    layer, i = i % n_layer, i // n_layer
    index, position = (i % d_mlp) * 97 % d_mlp, -1 - i // d_mlp     # 97 is prime: a permutation of the neurons
    node = {"kind": "mlp_neuron", "layer": layer, "index": index, "position": position}
    return {"prompts": [{"text": IOI, "interventions": [{"node": node, "mode": "zero"}]}, {"text": IOI_CORRUPTED}],
            "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": top_k, **(extra or {})}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _connect(url: str, timeout_s: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.hostname, parts.port, timeout=timeout_s)


def _post(connection: http.client.HTTPConnection, path: str, body: dict, headers: dict) -> int:
    """POST ``body`` as JSON on the kept-alive connection; the status, the answer read in full."""
    connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def server_info(url: str, headers: dict) -> dict:
    """``GET /api/v1/info``; exits naming the status if the server refuses it (e.g. a wrong token)."""
    connection = _connect(url, timeout_s=30)
    try:
        connection.request("GET", "/api/v1/info", headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise SystemExit(f"{url}/api/v1/info answered {response.status}: {body[:200].decode(errors='replace')}")
    return json.loads(body)


def _client(url: str, headers: dict, warmup: list[dict], bodies: list[dict], start_at: float
            ) -> tuple[list[float], int, int, float, float]:
    """One client: its own connection, requests one after another, the ``warmup`` ones untimed;
    (latencies of the 200s, 503s, errors, start and end of the timed requests). The standard
    library's HTTP client, not httpx: reading a 67 KB answer took httpx 1.1-1.5 ms of CPU, the
    standard library 0.45-0.49 ms, and on one machine the clients' CPU is taken from the server
    they measure."""
    latencies, busy, errors = [], 0, 0
    headers = {**headers, "Content-Type": "application/json"}
    connection = _connect(url, timeout_s=600)
    try:
        connection.request("GET", "/healthz")       # connect before the clock starts
        connection.getresponse().read()
        time.sleep(max(0.0, start_at - time.time()))
        for body in warmup:
            _post(connection, "/api/v1/attribution", body, headers)
        began = time.time()
        for body in bodies:
            start = time.perf_counter()
            status = _post(connection, "/api/v1/attribution", body, headers)
            elapsed = time.perf_counter() - start
            if status == 200:
                latencies.append(elapsed)
            elif status == 503:
                busy += 1
            else:
                errors += 1
    finally:
        connection.close()
    return latencies, busy, errors, began, time.time()


def _client_pid(hold_s: float) -> int:
    time.sleep(hold_s)        # busy, so that the other calls of the round reach the other processes
    return os.getpid()


def started_clients(stack: contextlib.ExitStack, concurrency: int) -> ProcessPoolExecutor:
    """``concurrency`` client processes, started (interpreter up, modules imported) before any round:
    starting them is a few hundred ms of CPU each, which would otherwise fall into the first
    requests of every round on the cores the server uses."""
    pool = stack.enter_context(ProcessPoolExecutor(concurrency, mp_context=multiprocessing.get_context("spawn")))
    seen: set[int] = set()
    while len(seen) < concurrency:
        seen |= {f.result() for f in [pool.submit(_client_pid, 0.05) for _ in range(concurrency)]}
    return pool


def run_level(clients: ProcessPoolExecutor, url: str, headers: dict, concurrency: int, n: int, warmup: int,
              offset: int, info: dict, top_k: int, extra: dict | None = None) -> dict:
    """``concurrency`` clients, each a separate process of ``clients`` (as separate users are:
    clients that are threads of one Python process would queue for its interpreter lock and add
    that wait to the latencies they measure), sharing ``n`` timed requests after ``warmup``
    untimed ones each: the 200s' latencies (s), the 503 and error counts, and the wall time (s) of
    the timed requests."""
    cfg = info["model"]
    bodies = [attribution_body(offset + i, cfg["n_layer"], cfg["d_mlp"], top_k, extra)
              for i in range(n + concurrency * warmup)]
    warm, timed = bodies[n:], bodies[:n]
    start_at = time.time() + 0.2 + 0.02 * concurrency
    # each client blocks until the round ends, so each of the idle processes takes one
    futures = [clients.submit(_client, url, headers, warm[c * warmup:(c + 1) * warmup], timed[c::concurrency], start_at)
               for c in range(concurrency)]
    results = [f.result() for f in futures]
    return {"latencies": [x for r in results for x in r[0]], "busy_503": sum(r[1] for r in results),
            "errors": sum(r[2] for r in results), "wall_s": max(r[4] for r in results) - min(r[3] for r in results)}


def summary(runs: list[dict]) -> dict:
    """One level's figures over its rounds."""
    latencies = [x for r in runs for x in r["latencies"]]
    ok = len(latencies)
    return {"ok": ok, "busy_503": sum(r["busy_503"] for r in runs), "errors": sum(r["errors"] for r in runs),
            "p50_ms": 1000 * statistics.median(latencies) if ok else float("nan"),
            "p99_ms": 1000 * percentile(latencies, 99) if ok else float("nan"),
            "req_per_s": ok / sum(r["wall_s"] for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=None, help="bearer token, if the server needs one")
    parser.add_argument("--requests", type=int, default=500,
                        help="requests per concurrency level (default 500: p99 is then the 5th worst, not the 2nd)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5,
                        help="turns each level takes, the requests split between them (default 5)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed requests each client sends first (default 2: its connection and the server's "
                             "batching of concurrent clients settle; the 8 clients all start at the same instant)")
    parser.add_argument("--total-effect-ln", choices=["live", "frozen"], default=None,
                        help="send this linearisation point with every request (default: leave it to the server; "
                             "a server from before the option refuses the field)")
    args = parser.parse_args(argv)
    extra = {"total_effect_ln": args.total_effect_ln} if args.total_effect_ln else {}
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    info = server_info(args.url, headers)
    print(f"model {info['model']['name']}: {info['model']['n_layer']} layers, d_model {info['model']['d_model']}; "
          f"{len(info['saes'])} SAEs")
    rounds = max(1, min(args.rounds, args.requests))
    runs: dict[int, list[dict]] = {c: [] for c in args.concurrency}
    # a random start among the requests (28,672 on the organism): a second run against the same
    # server must not get answers from its cache of identical requests
    offset = random.randrange(1 << 40)
    with contextlib.ExitStack() as stack:
        clients = {c: started_clients(stack, c) for c in args.concurrency}
        for round_ in range(rounds):
            n = args.requests // rounds + (round_ < args.requests % rounds)
            for c in args.concurrency:
                runs[c].append(run_level(clients[c], args.url, headers, c, n, args.warmup, offset, info, args.top_k,
                                         extra))
                offset += n + c * args.warmup
            print(f"round {round_ + 1}/{rounds}: " + ", ".join(
                f"{c} client(s) p50 {summary([r[-1]])['p50_ms']:.1f} p99 {summary([r[-1]])['p99_ms']:.1f} ms"
                for c, r in runs.items()), file=sys.stderr, flush=True)
    levels = {c: summary(r) for c, r in runs.items()}
    print(f"{'clients':>7} {'ok':>5} {'503':>5} {'err':>5} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>7}")
    for c, r in levels.items():
        print(f"{c:>7} {r['ok']:>5} {r['busy_503']:>5} {r['errors']:>5} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
              f"{r['req_per_s']:>7.2f}")
    if 1 in levels and len(levels) > 1:
        for c, r in levels.items():
            if c == 1:
                continue
            if rounds > 1:
                each = [summary([high])["p99_ms"] / summary([low])["p50_ms"] for low, high in zip(runs[1], runs[c])]
                print(f"each round's p99({c}) / p50(1): " + " ".join(f"{x:.2f}" for x in each))
            ratio = r["p99_ms"] / levels[1]["p50_ms"]
            print(f"p99({c} clients) / p50(1 client) = {ratio:.2f} (target <= 3): {'PASS' if ratio <= 3 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
