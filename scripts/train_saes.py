#!/usr/bin/env python
"""Train the SAEs shipped with mechscope's model organism and write their card.

One TopK SAE (with AuxK) per layer on ``blocks.L.hook_attn_out`` and one on ``blocks.L.hook_mlp_out``,
trained together on one activation stream from the organism's task-suite corpus (rows from
``--first-row`` on, which the organism never saw), scored with ``evaluate_sae`` on held-out rows
(``--eval-first-row``), and written in mechscope's format:

    python scripts/train_saes.py        # writes autoencoders/organism/<hook point>/ and SAE_CARD.md

Deterministic given the seed and the thread count (default 2). Exits with status 1 if any SAE
misses the acceptance bar (EV >= 0.9, dead < 10%, CE loss recovered >= 0.9, L0 <= 32); the files
are written either way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from mechscope.autoencoders import save_sae
from mechscope.autoencoders.evaluation import SAEMetrics, evaluate_sae, format_metrics_table
from mechscope.autoencoders.organism_saes import ORGANISM_SAE_DIR, organism_sae_hook_points
from mechscope.autoencoders.training import TrainingConfig, train_saes
from mechscope.datasets.task_suite import TaskSuite
from mechscope.inference import load_model
from mechscope.inference.devices import add_device_arguments, placement_from_args
from mechscope.inference.loading import ORGANISM_DIR

ACCEPTANCE = {"explained_variance": (">=", 0.9), "dead_fraction": ("<", 0.1), "ce_loss_recovered": (">=", 0.9),
              "l0": ("<=", 32)}


def parse_args(argv=None) -> argparse.Namespace:
    defaults = TrainingConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="organism", help="'organism' or a checkpoint directory")
    p.add_argument("--out", type=Path, default=ORGANISM_SAE_DIR)
    p.add_argument("--corpus-seed", type=int, default=0, help="TaskSuite seed (the organism's corpus)")
    p.add_argument("--first-row", type=int, default=10_000_000, help="first corpus row of the training stream")
    p.add_argument("--eval-first-row", type=int, default=20_000_000, help="first held-out corpus row")
    p.add_argument("--eval-rows", type=int, default=64)
    p.add_argument("--rows-per-batch", type=int, default=32, help="corpus rows per model forward pass")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--n-latents", type=int, default=defaults.n_latents)
    p.add_argument("--k", type=int, default=defaults.k)
    p.add_argument("--batch-tokens", type=int, default=defaults.batch_tokens)
    p.add_argument("--total-tokens", type=int, default=defaults.total_tokens)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--aux-k", type=int, default=defaults.aux_k)
    p.add_argument("--dead-after-tokens", type=int, default=100_000,
                   help="AuxK revives latents inactive this long (100k: at 250k the last MLP SAE ended 10%% dead)")
    p.add_argument("--buffer-tokens", type=int, default=defaults.buffer_tokens)
    p.add_argument("--threads", type=int, default=2)
    add_device_arguments(p)   # where the model runs; SAEs train on float32 CPU copies of its activations
    p.add_argument("--log", type=Path, default=Path("artifacts/sae_training/log.jsonl"))
    return p.parse_args(argv)


def model_fingerprint(spec: str) -> dict[str, str]:
    directory = ORGANISM_DIR if spec == "organism" else Path(spec)
    weights = directory / "model.safetensors"
    if not weights.is_file():
        return {"model": spec}
    return {"model": spec, "model_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}


def acceptance_failures(metrics: SAEMetrics) -> list[str]:
    checks = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
    return [f"{metrics.hook_point}: {name} = {getattr(metrics, name):.4f}, needs {op} {bound}"
            for name, (op, bound) in ACCEPTANCE.items() if not checks[op](getattr(metrics, name), bound)]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    place = placement_from_args(args)
    model = load_model(args.model, device=place.torch_device, dtype=place.torch_dtype).eval().requires_grad_(False)
    config = TrainingConfig(n_latents=args.n_latents, k=args.k, batch_tokens=args.batch_tokens,
                            total_tokens=args.total_tokens, lr=args.lr, aux_k=args.aux_k,
                            dead_after_tokens=args.dead_after_tokens, buffer_tokens=args.buffer_tokens,
                            seed=args.seed)
    suite = TaskSuite(seed=args.corpus_seed, n_ctx=model.cfg.n_ctx)
    hook_points = organism_sae_hook_points(model.cfg.n_layers)
    training_rows = -(-config.total_tokens // model.cfg.n_ctx)
    source = {**model_fingerprint(args.model),
              "corpus": {"generator": "mechscope.datasets.task_suite.TaskSuite", "seed": args.corpus_seed,
                         "training_rows": [args.first_row, args.first_row + training_rows],
                         "heldout_rows": [args.eval_first_row, args.eval_first_row + args.eval_rows]},
              "script": "scripts/train_saes.py"}

    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("w", buffering=1) as log_file:
        started = time.perf_counter()
        result = train_saes(model, suite.training_batches(args.rows_per_batch, args.first_row), hook_points,
                            config, model_name="organism" if args.model == "organism" else args.model,
                            source=source, on_log=lambda record: log_file.write(json.dumps(record) + "\n"))
        train_seconds = time.perf_counter() - started
    eval_batches = [suite.training_rows(args.eval_rows, args.eval_first_row)]
    started = time.perf_counter()
    metrics = [evaluate_sae(model, result.saes[name], eval_batches) for name in hook_points]
    eval_seconds = time.perf_counter() - started

    if args.out.exists():
        shutil.rmtree(args.out)
    for name in hook_points:
        save_sae(result.saes[name], args.out / name, format="mechscope")
    (args.out / "metrics.json").write_text(json.dumps([m.to_dict() for m in metrics], indent=2) + "\n")
    (args.out / "SAE_CARD.md").write_text(card(args, config, model, result.tokens_per_sae, metrics,
                                               train_seconds, eval_seconds, source))
    table = format_metrics_table(metrics)
    print(table)
    print(f"training: {train_seconds:.0f} s, evaluation: {eval_seconds:.0f} s; wrote {args.out}")
    failures = [f for m in metrics for f in acceptance_failures(m)]
    for failure in failures:
        print("FAILS ACCEPTANCE:", failure, file=sys.stderr)
    return 1 if failures else 0


def card(args, config: TrainingConfig, model, tokens: int, metrics: list[SAEMetrics], train_seconds: float,
         eval_seconds: float, source: dict) -> str:
    size = sum(p.stat().st_size for p in args.out.rglob("*.safetensors"))
    d = model.cfg.d_model
    return f"""# SAEs of the mechscope model organism

{len(metrics)} sparse autoencoders, one per layer on the attention output (`blocks.L.hook_attn_out`) and
one on the MLP output (`blocks.L.hook_mlp_out`) of the shipped organism ({model.cfg.n_layers} layers,
d_model {d}). Load them with

```python
from mechscope.autoencoders.organism_saes import load_organism_saes
from mechscope.autoencoders import SAESplice
saes = load_organism_saes()                       # forward order: L0 attn, L0 mlp, L1 attn, ...
logits = model(tokens, splices=[SAESplice(sae) for sae in saes])
```

## Architecture

- TopK SAE: `latents = TopK_k(ReLU-ed)((x - b_dec) @ W_enc + b_enc)`, `recon = latents @ W_dec + b_dec`;
  d_in = {d}, n_latents = {config.n_latents} ({config.n_latents // d}x), k = {config.k}; fp32,
  {size / 1e6:.1f} MB for all {len(metrics)} (mechscope format: `sae.json` + `sae.safetensors` per hook point).
- Decoder rows have unit norm, so a latent's value is the length of what it writes, in the
  activation's own units (the training-time input scale is folded into the biases).
- Inputs are raw activations of the unprocessed organism: no input normalisation, no weight
  centring, no LayerNorm folding (`expected_weight_processing` records this in each `sae.json`).
- Why TopK with AuxK rather than ReLU + L1: TopK fixes L0 exactly (the acceptance bound L0 <= 32
  holds by construction), has no L1 shrinkage of latent values to correct, and needs no sparsity
  coefficient sweep per hook point — one hyper-parameter set serves all eight SAEs. The AuxK loss
  (the top {config.aux_k} pre-activations of latents inactive for {config.dead_after_tokens:,} tokens must reconstruct the
  residual, weight {config.aux_coefficient:.4g}) keeps dead latents rare without resampling.

## Training

- Data: `TaskSuite(seed={args.corpus_seed})` corpus rows {source['corpus']['training_rows'][0]:,} onward (the organism trained on
  rows below 10,000,000), {tokens:,} tokens per SAE ({tokens // model.cfg.n_ctx:,} rows of {model.cfg.n_ctx}
  tokens, every position including BOS), activations shuffled in a buffer of {config.buffer_tokens:,} tokens.
  All eight SAEs read the same stream (one forward pass per batch).
- Loss: normalised MSE (1 - explained variance of the batch) + AuxK; Adam, lr {config.lr:g}, {config.warmup_steps} warm-up
  steps, linear decay over the last {config.decay_fraction:.0%}; {config.n_steps} steps of {config.batch_tokens} tokens; seed {config.seed}.
- Wall-clock: {train_seconds:.0f} s training + {eval_seconds:.0f} s evaluation on {args.threads} CPU threads
  ({platform.processor() or platform.machine()}, `nice -n 19`, sharing the machine with other work).

## Metrics (held-out corpus rows {args.eval_first_row:,}..{args.eval_first_row + args.eval_rows - 1:,}, {metrics[0].n_tokens:,} tokens)

From `mechscope.autoencoders.evaluation.evaluate_sae`. EV: explained variance; MSE per feature;
L0: active latents per token; dead: latents never active on these tokens; CE: next-token
cross-entropy (nats) of the clean model, with the activation replaced by the SAE's reconstruction
(no error term), and with the activation zeroed; CE recovered = (zero - spliced) / (zero - clean);
KL: mean KL(clean || spliced) per token.

{format_metrics_table(metrics)}

Acceptance bar for shipping: EV >= 0.9, dead < 10%, CE recovered >= 0.9, L0 <= 32 for every SAE.

## Reproduce

```
python scripts/train_saes.py --seed {args.seed} --n-latents {config.n_latents} --k {config.k} --total-tokens {config.total_tokens} --threads {args.threads}
```

(defaults shown; writes this folder and a training log to `{args.log}`). Same seed and thread
count give the same weights.
"""


if __name__ == "__main__":
    sys.exit(main())
