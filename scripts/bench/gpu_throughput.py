"""Node-table and dataset-build throughput on a GPT-2-small-shaped model (random weights) with
SAE latents, on --device / --dtype (run it where a GPU is; --tiny runs a small shape on the CPU as
a smoke test).

    python scripts/bench/gpu_throughput.py --device cuda --dtype bfloat16
    python scripts/bench/gpu_throughput.py --device cpu --tiny          # smoke test

Prints, per setting: node tables per second (one prompt of --tokens tokens, --latents-latent SAEs
at every layer's MLP output, latents in the table) at batch 1 and --batch prompts sharing a pass,
and dataset-build tokens per second (MLP neurons, heads and the SAE latents).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch


def shaped_model(tiny: bool, place):  # type: ignore[no-untyped-def]
    from mechscope.inference import GPT2, GPT2Config
    cfg = (GPT2Config(n_layers=2, n_heads=4, d_model=64, n_ctx=64, name="tiny") if tiny
           else GPT2Config(n_layers=12, n_heads=12, d_model=768, n_ctx=1024, name="gpt2-small-shaped"))
    model = GPT2(cfg)
    model.init_weights(seed=0)
    return model.eval().requires_grad_(False).to(device=place.torch_device, dtype=place.torch_dtype)


def random_saes(model, n_latents: int, place) -> list:  # type: ignore[no-untyped-def]
    from mechscope.autoencoders import SAEConfig, SparseAutoencoder
    d, saes = model.cfg.d_model, []
    for layer in range(model.cfg.n_layers):
        sae = SparseAutoencoder(SAEConfig(d_in=d, n_latents=n_latents, hook_point=f"blocks.{layer}.hook_mlp_out"))
        g = torch.Generator().manual_seed(layer)
        with torch.no_grad():
            sae.W_enc.copy_(torch.randn(d, n_latents, generator=g) / d ** 0.5)
            sae.W_dec.copy_(torch.randn(n_latents, d, generator=g) / d ** 0.5)
            sae.b_enc.fill_(-0.3)  # sparse-ish, like a trained SAE
        saes.append(sae.requires_grad_(False).to(device=place.torch_device, dtype=place.torch_dtype))
    return saes


def _sync(place) -> None:  # type: ignore[no-untyped-def]
    if place.torch_device.type == "cuda":
        torch.cuda.synchronize(place.torch_device)


def node_tables_per_s(engine, n_tokens: int, batch: int, repeats: int, place) -> float:  # type: ignore[no-untyped-def]
    from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PromptSpec
    from mechscope.inference import gpt2_tokenizer
    tok = gpt2_tokenizer()
    words = " When Mary and John went to the store, John gave a drink to Mary. Then the"
    text = tok.decode((tok.encode(words) * (n_tokens // 8 + 2))[:n_tokens - 2]) + " to"
    requests = [AttributionRequest(prompts=[PromptSpec(text=text)], mlp="latents", top_k=20,
                                   loss=LossSpec(targets=[" Mary"], distractors=[" John"])) for _ in range(batch)]
    engine.attribute_many_json(requests)   # warm-up
    _sync(place)
    start = time.perf_counter()
    for _ in range(repeats):
        engine.attribute_many_json(requests)
    _sync(place)
    return batch * repeats / (time.perf_counter() - start)


def build_tokens_per_s(model, saes, rows: int, batch: int, place) -> float:  # type: ignore[no-untyped-def]
    from mechscope.autoencoders import SAESplice
    from mechscope.datasets.node_dataset.builder import NodeDatasetBuilder
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    from mechscope.datasets.node_dataset.config import BuildConfig
    from mechscope.datasets.stores import LocalBlobStore
    n_ctx = min(model.cfg.n_ctx, 128)
    corpus = TaskSuiteCorpus(seed=0, num_rows=rows, n_ctx=n_ctx)
    with tempfile.TemporaryDirectory() as d:
        builder = NodeDatasetBuilder(model, corpus, LocalBlobStore(d), "bench", saes=[SAESplice(s) for s in saes],
                                     config=BuildConfig(batch_size=batch, checkpoint_every=0), progress=False)
        builder.run()
        _sync(place)
    return builder.timings["tokens_streamed"] / max(builder.timings["stream_s"], 1e-9)


def main(argv: list[str] | None = None) -> int:
    from mechscope.activation_server.engine import Engine
    from mechscope.inference.devices import add_device_arguments, placement_from_args
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(p)
    p.add_argument("--tiny", action="store_true", help="a 2-layer d_model 64 model (a CPU smoke test)")
    p.add_argument("--latents", type=int, default=32768, help="latents per SAE (one SAE per layer)")
    p.add_argument("--tokens", type=int, default=64, help="prompt length of the node tables")
    p.add_argument("--batch", type=int, default=8, help="prompts sharing a pass")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", type=int, default=256, help="corpus rows of the dataset build")
    args = p.parse_args(argv)
    place = placement_from_args(args)
    if args.tiny:
        args.latents, args.tokens, args.rows, args.repeats = min(args.latents, 256), min(args.tokens, 24), 8, 1
    model = shaped_model(args.tiny, place)
    saes = random_saes(model, args.latents, place)
    engine = Engine(model, saes, reference_tokens=torch.zeros(1, 8, dtype=torch.long))
    name = torch.cuda.get_device_name(place.torch_device) if place.torch_device.type == "cuda" else "cpu"
    print(f"{model.cfg.name} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model}) + {len(saes)} SAEs of "
          f"{args.latents} latents on {place.device} ({name}), {place.dtype}")
    one = node_tables_per_s(engine, args.tokens, 1, args.repeats, place)
    many = node_tables_per_s(engine, args.tokens, args.batch, args.repeats, place)
    print(f"node tables ({args.tokens} tokens, latents): {one:.2f}/s at batch 1, {many:.2f}/s at batch {args.batch}")
    rate = build_tokens_per_s(model, saes, args.rows, args.batch, place)
    print(f"dataset build (neurons, heads, latents; {args.rows} rows): {rate:,.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
