#!/usr/bin/env python
"""Node-dataset benchmark, measured in one run on an organism-shaped model (4 layers, d_model 128,
4 heads, d_mlp 512, context 128; random weights unless --model is given) with one random SAE per
layer at mlp.hook_post:

  build tokens/s (all neurons, heads, SAE latents) / plain forward tokens/s     target >= 0.7
  page load (NodeDataset.node on a local store): p50 over random nodes          target <= 20 ms

    python scripts/bench/datasets.py [--rows 512] [--batch 32] [--sae-latents 2048] [--model organism]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch


def organism_shaped_model():  # type: ignore[no-untyped-def]
    from mechscope.inference import GPT2, GPT2Config
    model = GPT2(GPT2Config(n_layers=4, n_heads=4, d_model=128, n_ctx=128, name="organism-shaped"))
    model.init_weights(seed=0)
    return model.eval().requires_grad_(False)


def random_sae(point: str, d_in: int, n_latents: int, seed: int):  # type: ignore[no-untyped-def]
    from mechscope.autoencoders import SAEConfig, SparseAutoencoder
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, n_latents=n_latents, hook_point=point))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, n_latents, generator=g) / d_in ** 0.5)
        sae.W_dec.copy_(torch.randn(n_latents, d_in, generator=g) / d_in ** 0.5)
        sae.b_enc.fill_(-0.3)  # sparse-ish, like a trained SAE
    return sae.requires_grad_(False)


def forward_rate(model, batches, splices=()) -> float:  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        model(batches[0], splices=splices)  # warm-up
        started = time.perf_counter()
        for tokens in batches:
            model(tokens, splices=splices)
        elapsed = time.perf_counter() - started
    return sum(t.numel() for t in batches) / elapsed


def main() -> None:
    from mechscope.autoencoders import SAESplice
    from mechscope.datasets.node_dataset import NodeDataset
    from mechscope.datasets.node_dataset.builder import NodeDatasetBuilder
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    from mechscope.datasets.node_dataset.config import BuildConfig
    from mechscope.datasets.stores import LocalBlobStore
    from mechscope.inference import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sae-latents", type=int, default=2048)
    p.add_argument("--model", default=None, help="a model to load (default: random organism-shaped weights)")
    p.add_argument("--pages", type=int, default=300, help="random nodes to time page loads on")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model) if args.model else organism_shaped_model()
    cfg = model.cfg
    saes = [random_sae(f"blocks.{L}.mlp.hook_post", cfg.d_mlp, args.sae_latents, seed=L) for L in range(cfg.n_layers)]
    corpus = TaskSuiteCorpus(seed=0, num_rows=args.rows, n_ctx=cfg.n_ctx)
    batches = [corpus.rows(i, min(args.batch, args.rows - i)) for i in range(0, args.rows, args.batch)]

    plain = forward_rate(model, batches)
    with_saes = forward_rate(model, batches, [SAESplice(s) for s in saes])
    with tempfile.TemporaryDirectory() as root:
        store = LocalBlobStore(root)
        config = BuildConfig(batch_size=args.batch, checkpoint_every=0)
        builder = NodeDatasetBuilder(model, corpus, store, "bench", saes=saes, config=config, progress=False)
        builder.run(resume=False)
        streamed = builder.timings["stream_s"]
        total = streamed + builder.timings["finalize_s"]
        build_rate = builder.timings["tokens_streamed"] / streamed

        ds = NodeDataset(store, "bench")
        ds.node("mlp_neuron", 0, 0)  # loads the tokenizer once (a server does this at start-up)
        nodes = list(ds.iter_nodes())
        rng = random.Random(0)
        times = []
        cold = NodeDataset(store, "bench", tokenizer=ds.tokenizer)  # group indexes load on first use
        for kind, layer, index, hook in rng.sample(nodes, min(args.pages, len(nodes))):
            t = time.perf_counter()
            cold.node(kind, layer, index, hook_point=hook)
            times.append(time.perf_counter() - t)
        n_nodes = len(nodes)

    print(f"{cfg.name}: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads, d_mlp {cfg.d_mlp}; "
          f"{len(saes)} SAEs x {args.sae_latents} latents; {n_nodes} nodes; {args.rows} rows x {corpus.n_ctx} tokens, "
          f"batch {args.batch}, {args.threads} threads")
    print(f"plain forward (logits)           {plain:10.0f} tok/s")
    print(f"forward with SAEs spliced        {with_saes:10.0f} tok/s")
    print(f"build, streaming                 {build_rate:10.0f} tok/s   ratio to plain forward {build_rate / plain:.2f} "
          f"(target >= 0.7); to forward with SAEs {build_rate / with_saes:.2f}")
    print(f"build, end to end (+ finalize)   {corpus.num_rows * corpus.n_ctx / total:10.0f} tok/s   "
          f"(finalize {total - streamed:.1f} s)")
    times.sort()
    print(f"page load over {len(times)} random nodes: p50 {statistics.median(times) * 1000:.2f} ms, "
          f"p90 {times[int(0.9 * len(times))] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms (target p50 <= 20 ms)")


if __name__ == "__main__":
    main()
