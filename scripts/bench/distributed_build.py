#!/usr/bin/env python
"""Node datasets built on Ray against the plain builder: the organism (or --model), all its neurons
and heads, over task-suite rows; every build writes to its own temporary local store.

  plain   NodeDatasetBuilder in this process, torch on 1 thread: stream tokens/s; its inverse is
          the per-token cost c one worker pays (the figure the README scales to a cluster)
  ray W   a local Ray (ray.init(num_cpus=2)), W workers of 1 CPU / 1 thread, --shard-batches per shard:
          streaming tokens/s, from all actors loaded and calibrated to the last shard merged by the
          driver (like plain's figure, without the final write of the dataset); in-shard tokens/s
          (tokens / seconds the workers spent inside shards, summed over workers); and the start-up
          (actor processes started, model loaded, calibration batch), a fixed cost per build
  overhead on one worker = plain tokens/s / ray-1 streaming tokens/s - 1         target <= 10 %
  with start-up         = the same with ray-1's start-up seconds added to its streaming time
  speed-up with 2 workers = ray-2 / ray-1 streaming tokens/s (2 cores: at most 2x)

--repeats N runs plain, ray-1, ray-2, plain, ray-1, ... N times, interleaved so that a slow spell
of the machine hits every variant alike, and reports the median of each.

    python scripts/bench/distributed_build.py [--rows 4096] [--n-ctx 128] [--batch-size 32] [--shard-batches 16] [--repeats 3]
    python scripts/bench/distributed_build.py --smoke    # seconds: checks that it runs, figures mean nothing

Take real figures on an idle machine: the workers, the driver and the plain build share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

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


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="organism",
                   help="a model name or checkpoint directory, or 'gpt2-small-shape': GPT-2 small's architecture "
                        "with random weights (its cost per token is GPT-2 small's; no download)")
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--n-ctx", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-batches", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Ray worker counts ('--workers' alone: "
                   "the plain builder only)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a tiny run (rows 64, n-ctx 64, batch 8, shards of 2)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object too")
    args = p.parse_args()
    if args.smoke:
        args.rows, args.n_ctx, args.batch_size, args.shard_batches = 64, 64, 8, 2
    return args


def main() -> None:
    from mechscope.datasets.node_dataset.config import BuildConfig
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    from mechscope.datasets.node_dataset.distributed import require_ray
    from mechscope.inference import load_model

    args = parse_args()
    ray = require_ray()
    shape_dir = tempfile.TemporaryDirectory() if args.model == "gpt2-small-shape" else None
    if shape_dir is not None:   # workers load it by path, like any checkpoint directory
        args.model = gpt2_small_shape(shape_dir.name)
    model = load_model(args.model, progress=False)
    corpus = TaskSuiteCorpus(seed=0, num_rows=args.rows, first_row=10_000_000, n_ctx=args.n_ctx)
    config = BuildConfig(batch_size=args.batch_size, kinds=("mlp_neuron", "attn_head"))
    print(f"{args.model}: {args.rows} rows x {args.n_ctx} tokens, batches of {args.batch_size}, "
          f"shards of {args.shard_batches} batches, {args.repeats} interleaved repeat(s), medians")

    # a throwaway local instance: no usage reports, no token written to ~/.ray/auth_token
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.workers:
        ray.init(num_cpus=max(2, *args.workers), include_dashboard=False, log_to_driver=False)
    runs: dict[str, list[dict]] = {"plain": [], **{f"ray_{w}": [] for w in args.workers}}
    try:
        for _ in range(args.repeats):
            runs["plain"].append(plain_build(model, corpus, config, args.model))
            for workers in args.workers:
                runs[f"ray_{workers}"].append(ray_build(model, corpus, config, args.model, workers,
                                                        args.shard_batches))
    finally:
        if args.workers:
            ray.shutdown()
        if shape_dir is not None:
            shape_dir.cleanup()
    report(runs, args)


def gpt2_small_shape(directory: str) -> str:
    from mechscope.inference import GPT2, GPT2Config, save_pretrained
    model = GPT2(GPT2Config(n_layers=12, n_heads=12, d_model=768, n_ctx=1024, d_vocab=50257, name="gpt2-small-shape"))
    model.init_weights(seed=0)
    save_pretrained(model, directory)
    return directory


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def median(name: str, fn) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(fn(t) for t in runs[name])

    plain_rate = median("plain", lambda t: t["tokens_streamed"] / t["stream_s"])
    figures: dict = {"plain_tokens_per_s": plain_rate, "seconds_per_token_per_worker": 1 / plain_rate,
                     "plain_runs_tokens_per_s": [t["tokens_streamed"] / t["stream_s"] for t in runs["plain"]]}
    print(f"plain builder, 1 thread: {plain_rate:,.0f} tokens/s ({1e6 / plain_rate:.1f} us/token)")
    for workers in args.workers:
        name = f"ray_{workers}"
        streaming = median(name, lambda t: t["tokens_streamed"] / t["stream_s"])
        with_startup = median(name, lambda t: t["tokens_streamed"] / (t["stream_s"] + t["startup_s"]))
        in_shard = median(name, lambda t: t["tokens_streamed"] / t["shard_s"] * workers)
        startup = median(name, lambda t: t["startup_s"])
        figures[name] = {"tokens_per_s": streaming, "tokens_per_s_with_startup": with_startup,
                         "in_shard_tokens_per_s": in_shard, "startup_s": startup,
                         "runs_tokens_per_s": [t["tokens_streamed"] / t["stream_s"] for t in runs[name]]}
        print(f"ray, {workers} worker(s): {streaming:,.0f} tokens/s streaming, {in_shard:,.0f} in shards, "
              f"{with_startup:,.0f} with the {startup:.1f} s start-up ({runs[name][0]['shards']} shards)")
    if "ray_1" in figures:
        overhead = plain_rate / figures["ray_1"]["tokens_per_s"] - 1
        overhead_startup = plain_rate / figures["ray_1"]["tokens_per_s_with_startup"] - 1
        figures["overhead_one_worker"], figures["overhead_one_worker_with_startup"] = overhead, overhead_startup
        print(f"overhead on one worker vs the plain builder: {overhead:+.1%} streaming (target <= 10%), "
              f"{overhead_startup:+.1%} with the start-up at this size")
    if "ray_1" in figures and "ray_2" in figures:
        speedup = figures["ray_2"]["tokens_per_s"] / figures["ray_1"]["tokens_per_s"]
        figures["speedup_two_workers"] = speedup
        print(f"2 workers / 1 worker: {speedup:.2f}x")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
