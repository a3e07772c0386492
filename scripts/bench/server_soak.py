"""Memory soak of a running activation server: several clients send varied attribution requests for
a while; the resident memory of the server process and of its compute processes is sampled every
minute.

    mechscope serve --port 8766 &
    python scripts/bench/server_soak.py --url http://127.0.0.1:8766 --pid $! --minutes 10

Requests ablate a random head with a random top-k (about a thousand distinct requests, so most miss
the server's cache of identical requests). Prints one line per minute and a JSON summary: requests,
5xx count, RSS (the server and its descendants together, and each process) at start and end. Flat
memory = RSS at the end within a few percent of the RSS after the first minute (the first minute
fills caches and allocator pools).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time

import httpx

PROMPT = "When Mary and John went to the store, John gave a drink to"


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's compute processes), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rpartition(")")[2].split()[1])
            except OSError:
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_rss_mb(pid: int) -> dict[int, int]:
    out = {}
    for p in process_tree(pid):
        try:
            out[p] = rss_mb(p)
        except (OSError, RuntimeError):
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, required=True,
                        help="the server's process id (its RSS and its descendants' are sampled)")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    info = httpx.get(f"{args.url}/api/v1/info", timeout=30).raise_for_status().json()["model"]
    deadline = time.time() + 60 * args.minutes
    counts = {"requests": 0, "5xx": 0, "other_errors": 0}
    lock = threading.Lock()

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        with httpx.Client(base_url=args.url, timeout=120) as http:
            while time.time() < deadline:
                node = {"kind": "attn_head", "layer": rnd.randrange(info["n_layer"]), "index": rnd.randrange(info["n_head"]),
                        "position": -1}
                body = {"prompts": [{"text": PROMPT, "interventions": [{"node": node, "mode": "zero"}]}],
                        "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": rnd.randrange(5, 40)}
                status = http.post("/api/v1/attribution", json=body).status_code
                with lock:
                    counts["requests"] += 1
                    counts["5xx"] += status >= 500
                    counts["other_errors"] += 400 <= status < 500

    start = tree_rss_mb(args.pid)
    samples = [(0, sum(start.values()))]
    per_process = [(0, start)]
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    t0 = time.time()
    while any(t.is_alive() for t in threads):
        time.sleep(min(60.0, max(0.1, deadline - time.time())))
        now = tree_rss_mb(args.pid)
        samples.append((round(time.time() - t0), sum(now.values())))
        per_process.append((samples[-1][0], now))
        print(f"{samples[-1][0]:>5} s  RSS {samples[-1][1]} MB ({' + '.join(map(str, now.values()))})  "
              f"requests {counts['requests']}", flush=True)
    print(json.dumps({**counts, "rss_mb_start": samples[0][1],
                      "rss_mb_after_1_min": samples[1][1] if len(samples) > 1 else None,
                      "rss_mb_end": samples[-1][1], "samples": samples,
                      "per_process_start": per_process[0][1], "per_process_end": per_process[-1][1]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
