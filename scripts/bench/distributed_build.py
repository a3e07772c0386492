#!/usr/bin/env python
"""Node datasets built on Ray against the plain builder: the organism (or --model), all its neurons
and heads, over task-suite rows; every build writes to its own temporary local store.

  plain   NodeDatasetBuilder in this process, torch on 1 thread: stream tokens/s; its inverse is
          the per-token cost one worker pays (the figure docs_distributed.md scales to a cluster)
  ray W   a local Ray (ray.init(num_cpus=2)), W workers of 1 CPU / 1 thread, --shard-batches per shard:
          end to end tokens/s (the first actor's start, calibration, every shard, the driver's merges;
          like plain's figure, without the final write of the dataset), and in-shard tokens/s
          (tokens / seconds the workers spent inside shards, summed over workers)
  overhead on one worker = plain tokens/s / ray-1 end-to-end tokens/s - 1       target <= 10 %
  speed-up with 2 workers = ray-2 / ray-1 end to end (2 cores: at most 2x, less as the driver merges)

    python scripts/bench/distributed_build.py [--rows 4096] [--n-ctx 128] [--batch-size 32] [--shard-batches 16]
    python scripts/bench/distributed_build.py --smoke    # seconds: checks that it runs, figures mean nothing

Take real figures on an idle machine: the workers, the driver and the plain build share its cores.
The fixed costs (actor start ~ model load, calibration) shrink relative to the work as --rows grows.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch


def plain_build(model, corpus, config, model_name: str) -> dict:  # type: ignore[no-untyped-def]
    from mechscope.datasets.node_dataset.builder import NodeDatasetBuilder
    from mechscope.datasets.stores import LocalBlobStore
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            builder = NodeDatasetBuilder(model, corpus, LocalBlobStore(tmp), "bench", config=config,
                                         model_name=model_name, progress=False)
            builder.run(resume=False)
            return builder.timings
    finally:
        torch.set_num_threads(threads)


def ray_build(model, corpus, config, model_name: str, workers: int, shard_batches: int) -> dict:  # type: ignore[no-untyped-def]
    from mechscope.datasets.node_dataset.distributed import BuildJob, DistributedBuild, ModelSource
    with tempfile.TemporaryDirectory() as tmp:
        job = BuildJob(ModelSource(model_name), corpus, tmp, "bench", config, model_name=model_name)
        build = DistributedBuild(job, shard_batches=shard_batches, workers=workers, progress=False, model=model,
                                 saes=[])
        build.run(resume=False)
        return build.timings


def main() -> None:
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    from mechscope.datasets.node_dataset.distributed import require_ray
    from mechscope.datasets.node_dataset.config import BuildConfig
    from mechscope.inference import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="organism")
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--n-ctx", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-batches", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--smoke", action="store_true", help="a tiny run (rows 64, n-ctx 64, batch 8, shards of 2)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object too")
    args = p.parse_args()
    if args.smoke:
        args.rows, args.n_ctx, args.batch_size, args.shard_batches = 64, 64, 8, 2
    ray = require_ray()
    model = load_model(args.model, progress=False)
    corpus = TaskSuiteCorpus(seed=0, num_rows=args.rows, first_row=10_000_000, n_ctx=args.n_ctx)
    config = BuildConfig(batch_size=args.batch_size, kinds=("mlp_neuron", "attn_head"))
    print(f"{args.model}: {args.rows} rows x {args.n_ctx} tokens, batches of {args.batch_size}, "
          f"shards of {args.shard_batches} batches")

    plain = plain_build(model, corpus, config, args.model)
    plain_rate = plain["tokens_streamed"] / plain["stream_s"]
    figures: dict = {"plain_tokens_per_s": plain_rate, "seconds_per_token_per_worker": 1 / plain_rate}
    print(f"plain builder, 1 thread: {plain_rate:,.0f} tokens/s ({1e6 / plain_rate:.1f} us/token)")

    # a throwaway local instance: no usage reports, no token written to ~/.ray/auth_token
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=max(2, max(args.workers)), include_dashboard=False, log_to_driver=False)
    try:
        for workers in args.workers:
            started = time.perf_counter()
            t = ray_build(model, corpus, config, args.model, workers, args.shard_batches)
            end_to_end = t["tokens_streamed"] / t["stream_s"]
            in_shard = t["tokens_streamed"] / t["shard_s"] * workers
            figures[f"ray_{workers}"] = {"tokens_per_s": end_to_end, "in_shard_tokens_per_s": in_shard,
                                         "wall_s": time.perf_counter() - started}
            print(f"ray, {workers} worker(s): {end_to_end:,.0f} tokens/s end to end, {in_shard:,.0f} in shards "
                  f"({t['shards']} shards; the dataset written in {t['finalize_s']:.1f} s)")
    finally:
        ray.shutdown()
    if "ray_1" in figures:
        overhead = plain_rate / figures["ray_1"]["tokens_per_s"] - 1
        figures["overhead_one_worker"] = overhead
        print(f"overhead on one worker vs the plain builder: {overhead:+.1%} (target <= 10%)")
    if "ray_1" in figures and "ray_2" in figures:
        speedup = figures["ray_2"]["tokens_per_s"] / figures["ray_1"]["tokens_per_s"]
        figures["speedup_two_workers"] = speedup
        print(f"2 workers / 1 worker: {speedup:.2f}x")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
