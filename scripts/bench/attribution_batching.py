#!/usr/bin/env python
"""What sharing one attribution pass saves: CPU time per request of the server benchmark's TDB
request (scripts/bench/server.py: the IOI prompt with one ablated neuron and its corrupted twin, top
20) when 1, 2, 4 and 8 of them share a call, on the organism, in one process, one torch thread
(as one compute process of `mechscope serve` runs them). Ratios measured in one run:

  per request in a call of 4 (the share of each compute process at 8 clients on 2 cores)
      / a call of 1 (one client)
  marginal cost of a request (call of 8 - call of 4) / 4, against the call of 1

Why it matters: at 8 clients each compute process answers calls of 4, and the server's
p99(8 clients) / p50(1 client) is roughly (a call of 4, plus gathering) / (a call of 1, plus HTTP):
what a shared call costs per extra request decides it; costs paid once per call cancel out.
Sizes alternate (1, 2, 4, 8, 1, 2, ...) so that a slow spell of the machine hits all of them.

    python scripts/bench/attribution_batching.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from server import attribution_body  # scripts/bench/server.py (the script's folder is on sys.path)

SIZES = (1, 2, 4, 8)


def main(argv: list[str] | None = None) -> int:
    from mechscope.activation_server.engine.loading import EngineSpec, load_engine
    from mechscope.activation_server.http.process_tuning import keep_freed_memory, settle_garbage_collector
    from mechscope.activation_server.schemas import AttributionRequest

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="calls of each size (default 20)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    engine = load_engine(EngineSpec("organism", organism_saes=True))   # what `mechscope serve` loads
    cfg = engine.model.cfg
    needed = (args.rounds + 2) * sum(SIZES)
    requests = [AttributionRequest.model_validate(attribution_body(i, cfg.n_layers, cfg.d_mlp, 20))
                for i in range(needed)]
    settle_garbage_collector()
    keep_freed_memory()
    cpu_ms: dict[int, list[float]] = {n: [] for n in SIZES}
    used = 0
    for round_ in range(args.rounds + 2):         # the first 2 rounds warm up
        for n in SIZES:
            batch, used = requests[used:used + n], used + n
            start = time.process_time()
            answers = engine.attribute_many_json(batch)
            elapsed = 1000 * (time.process_time() - start)
            bad = [a for a in answers if isinstance(a, Exception)]
            if bad:
                raise SystemExit(f"a benchmark request failed: {bad[0]!r}")
            if round_ >= 2:
                cpu_ms[n].append(elapsed)
        print(f"\rround {round_ + 1}/{args.rounds + 2}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    call = {n: statistics.median(v) for n, v in cpu_ms.items()}
    print(f"{'requests per call':>17} {'CPU ms per call':>16} {'per request':>12}")
    for n in SIZES:
        print(f"{n:>17} {call[n]:>16.1f} {call[n] / n:>12.2f}")
    marginal = (call[8] - call[4]) / 4
    print(f"per request in a call of 4 / a call of 1: {call[4] / 4 / call[1]:.2f}")
    print(f"marginal cost of a request ((call of 8 - call of 4) / 4): {marginal:.2f} ms = "
          f"{marginal / call[1]:.2f} of a call of 1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
