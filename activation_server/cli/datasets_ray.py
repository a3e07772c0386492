"""``mechscope datasets build --ray [ADDRESS]``: the options of a build on a Ray cluster, and its run.

  --ray [ADDRESS]        build on Ray: ADDRESS of the cluster (host:port of its head, or "auto");
                         without ADDRESS, $RAY_ADDRESS or a new local cluster
  --workers N            actors building shards (default: the cluster's CPUs / --cpus-per-worker)
  --shard-batches N      batches per shard, a power of two (default 16)
  --cpus-per-worker C    CPUs each actor reserves (default 1); torch runs that many threads
  --gpus-per-worker G    GPUs each actor reserves (default 0)
"""

from __future__ import annotations

import argparse


def add_ray_arguments(build: argparse.ArgumentParser) -> None:
    group = build.add_argument_group("Ray cluster (needs the extra mechscope[distributed])")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="build the shards on a Ray cluster: its head's host:port or 'auto' (no ADDRESS: "
                            "$RAY_ADDRESS or a new local cluster)")
    group.add_argument("--workers", type=int, default=None, help="actors building shards (default: all CPUs)")
    group.add_argument("--shard-batches", type=int, default=16, help="batches per shard, a power of two (16)")
    group.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs each actor reserves (1)")
    group.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs each actor reserves (0)")


def build_on_ray(args: argparse.Namespace, model, saes, corpus, config, prefix: str) -> int:  # type: ignore[no-untyped-def]
    from mechscope.datasets.node_dataset.distributed import BuildJob, DistributedBuild, ModelSource
    job = BuildJob(ModelSource(str(args.model), tuple(args.sae)), corpus, args.out, prefix, config,
                   model_name=str(args.model))
    build = DistributedBuild(job, shard_batches=args.shard_batches, workers=args.workers,
                             cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                             progress=not args.quiet, model=model, saes=saes)
    manifest = build.run(address=args.ray or None, resume=not args.no_resume, overwrite=args.overwrite)
    from .datasets import _summary
    print(f"node dataset '{prefix}' in {build.driver.store.description}: {_summary(manifest)}")
    t = build.timings
    if t:
        rate = t["tokens_streamed"] / max(t["stream_s"], 1e-9)
        print(f"built {t['shards'] - t['shards_resumed']} of {t['shards']} shards on Ray "
              f"({t['shards_resumed']} resumed): {t['tokens_streamed']} tokens at {rate:.0f} tokens/s after "
              f"{t['startup_s']:.1f} s starting the workers; wrote the dataset in {t['finalize_s']:.1f} s")
    return 0
