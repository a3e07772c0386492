#!/usr/bin/env python
"""Forward-pass benchmark on gpt2-small's shape (random weights), measured in one run:

  ours (no hooks) / HF forward                 target <= 1.0
  run_with_cache(all hooks) / HF forward       target <= 1.2
  peak memory of caching one hook vs all hooks

    python scripts/bench/forward.py [--batch 1] [--seq 128] [--repeats 15]
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc

import torch

from timing import median_time  # scripts/bench/timing.py




def cached_bytes(model, tokens, names) -> int:
    _, cache = model.run_with_cache(tokens, names=names)
    return cache.nbytes()


def peak_traced_bytes(fn) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    from mechscope.inference import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(HFConfig()).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = load_model(d)
    tokens = torch.randint(0, 50257, (args.batch, args.seq))
    with torch.inference_mode():
        t_hf = median_time(lambda: hf(tokens), args.repeats)
        t_ours = median_time(lambda: ours(tokens), args.repeats)
        t_cache = median_time(lambda: ours.run_with_cache(tokens), args.repeats)
        one = cached_bytes(ours, tokens, ["blocks.5.hook_resid_post"])
        every = cached_bytes(ours, tokens, None)
        peak_one = peak_traced_bytes(lambda: ours.run_with_cache(tokens, names=["blocks.5.hook_resid_post"]))
    print(f"gpt2-small shape, batch {args.batch} x {args.seq} tokens, {args.threads} threads, median of {args.repeats}")
    print(f"HF forward                    {t_hf * 1000:8.1f} ms")
    print(f"ours, no hooks                {t_ours * 1000:8.1f} ms   ratio {t_ours / t_hf:.3f} (target <= 1.0)")
    print(f"ours, run_with_cache(all)     {t_cache * 1000:8.1f} ms   ratio {t_cache / t_hf:.3f} (target <= 1.2)")
    print(f"cached tensors: one hook {one / 2**20:.2f} MiB, all hooks {every / 2**20:.1f} MiB "
          f"(ratio {every / one:.0f}x); python-heap peak while caching one hook {peak_one / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
