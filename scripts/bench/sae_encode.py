"""Encoding throughput of a SparseAutoencoder vs the plain matmul it is made of.

Prints, for ReLU and TopK (k=32) SAEs of 32768 latents on 768-d inputs, the median time of
``sae.encode(x)`` and of ``torch.addmm(b_enc, x, W_enc)`` (x @ W_enc + b_enc), and their throughput
ratio (target >= 0.8). Everything is measured in this one run: warmup, then the median of several
repeats, alternating the two measurements. Run on an otherwise idle machine:

    python scripts/bench/sae_encode.py [--batch 512] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mechscope.autoencoders import SAEConfig, SparseAutoencoder


def _interleaved_medians(fns, warmup: int, repeats: int) -> list[float]:
    """Median wall time of each function, timing them in turn within every repeat (fair under noise)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def bench(activation: str, d_in: int, n_latents: int, k: int, batch: int, warmup: int, repeats: int) -> float:
    config = SAEConfig(d_in=d_in, n_latents=n_latents, activation=activation, k=k if activation == "topk" else None)
    gen = torch.Generator().manual_seed(0)
    sae = SparseAutoencoder.from_tensors(config, {
        "W_enc": torch.randn(d_in, n_latents, generator=gen) / d_in**0.5,
        "b_enc": torch.randn(n_latents, generator=gen) * 0.1,
        "W_dec": torch.randn(n_latents, d_in, generator=gen) / n_latents**0.5,
        "b_dec": torch.randn(d_in, generator=gen) * 0.1,
    })
    x = torch.randn(batch, d_in, generator=gen)
    W_enc, b_enc = sae.W_enc.detach(), sae.b_enc.detach()
    with torch.inference_mode():
        t_encode, t_matmul = _interleaved_medians(
            [lambda: sae.encode(x), lambda: torch.addmm(b_enc, x, W_enc)], warmup, repeats
        )
    ratio = t_matmul / t_encode
    name = f"{activation}" + (f"(k={k})" if activation == "topk" else "")
    print(
        f"{name:<10} batch={batch} d_in={d_in} n_latents={n_latents}: "
        f"encode {batch / t_encode:,.0f} rows/s ({t_encode * 1e3:.2f} ms), "
        f"matmul {batch / t_matmul:,.0f} rows/s ({t_matmul * 1e3:.2f} ms), "
        f"ratio {ratio:.2f} {'OK' if ratio >= 0.8 else 'BELOW 0.8'}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--n-latents", type=int, default=32768)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for activation in ("relu", "topk"):
        bench(activation, args.d_in, args.n_latents, args.k, args.batch, args.warmup, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
