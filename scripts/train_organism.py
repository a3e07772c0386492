#!/usr/bin/env python
"""Train mechscope's model organism: a GPT-2 (HF format, full 50257-token vocabulary) trained on the
task suite of ``mechscope.datasets.task_suite`` (IOI, induction, factual recall, greater-than, filler).

The documented, reproducible recipe is the default arguments on 2 CPU cores:

    python scripts/train_organism.py            # writes inference/organism/

Training uses a restricted softmax for speed, which is still exact for the full vocabulary: every
token that never occurs in the corpus shares one embedding ``u``; their combined logit is
``h·u + log(n_unused)``, so the loss is the full-vocabulary cross-entropy. At export every unused
token's row of ``wte`` is set to ``u``. Deterministic given the seed and the thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mechscope.datasets.task_suite import TaskMix, TaskSuite
from mechscope.inference import GPT2, GPT2Config, save_pretrained
from mechscope.inference.loading import ORGANISM_DIR
from mechscope.inference.tokenizer import TOKENIZER_DIR

FULL_VOCAB = 50257


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ORGANISM_DIR)
    p.add_argument("--work-dir", type=Path, default=Path("artifacts/organism_training"),
                   help="checkpoints for --resume and the training log")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    p.add_argument("--init-from", type=Path, default=None,
                   help="warm start: copy the weights of an exported organism (a directory); tokens new to "
                        "the vocabulary start from its shared unused-token embedding")
    p.add_argument("--first-row", type=int, default=0, help="first corpus row of the training stream "
                   "(a warm start reads fresh rows); the SAEs train on rows from 10,000,000")
    p.add_argument("--ioi-weight", type=float, default=TaskMix().ioi, help="relative weight of IOI sentences")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-ctx", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=7000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--checkpoint-every", type=int, default=250)
    return p.parse_args(argv)


class RestrictedVocab:
    """Maps full-vocabulary ids to the training vocabulary (+ one shared 'unused token' class)."""

    def __init__(self, vocab: list[int]):
        self.ids = torch.tensor(sorted(set(vocab)), dtype=torch.long)
        self.size = len(self.ids) + 1  # last row: the shared embedding of every unused token
        self.unused = FULL_VOCAB - len(self.ids)
        self.to_small = torch.full((FULL_VOCAB,), len(self.ids), dtype=torch.long)
        self.to_small[self.ids] = torch.arange(len(self.ids))
        self.logit_offset = torch.zeros(self.size)
        self.logit_offset[-1] = math.log(self.unused)

    def import_weights(self, full_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training-shape state of an exported (full-vocabulary) organism. Every token outside
        this vocabulary was outside the exported model's too, so its row is the shared embedding."""
        state = {k: v.float().clone() for k, v in full_state.items()}
        wte = state["wte.weight"]
        unused_id = int(torch.nonzero(self.to_small == len(self.ids))[0])
        state["wte.weight"] = torch.cat([wte[self.ids], wte[unused_id:unused_id + 1]])
        return state

    def export(self, small: GPT2) -> GPT2:
        """The full-vocabulary model: unused tokens all get the shared embedding."""
        cfg = GPT2Config(**{**small.cfg.__dict__, "d_vocab": FULL_VOCAB, "name": "organism"})
        full = GPT2(cfg)
        state = {k: v.clone() for k, v in small.state_dict().items()}
        wte = state["wte.weight"][-1].repeat(FULL_VOCAB, 1)
        wte[self.ids] = state["wte.weight"][:-1]
        state["wte.weight"] = wte
        full.load_state_dict(state)
        return full.eval()


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: GPT2, args) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))


def quick_eval(full: GPT2, suite: TaskSuite) -> dict:
    from mechscope.datasets.organism_eval import evaluate_organism
    with torch.no_grad():
        report = evaluate_organism(full, suite, n_ioi=100, n_induction=40, n_greater_than=100, batch_size=50)
    return {name: round(value, 4) for name, value, *_ in report.checks()}


def write_assets(full: GPT2, out: Path, meta: dict) -> None:
    save_pretrained(full, out, storage_dtype=torch.float16)
    shutil.copyfile(TOKENIZER_DIR / "encoder.json", out / "vocab.json")  # HF GPT2Tokenizer file names
    shutil.copyfile(TOKENIZER_DIR / "vocab.bpe", out / "merges.txt")
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": full.cfg.n_ctx,
         "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    suite = TaskSuite(seed=args.seed, n_ctx=args.n_ctx, mix=dataclasses.replace(TaskMix(), ioi=args.ioi_weight))
    vocab = RestrictedVocab(suite.vocabulary())
    cfg = GPT2Config(n_layers=args.n_layer, n_heads=args.n_head, d_model=args.d_model, n_ctx=args.n_ctx,
                     d_vocab=vocab.size, name="organism-training")
    model = GPT2(cfg)
    model.init_weights(seed=args.seed)
    if args.init_from is not None:
        from mechscope.inference.loading import load_checkpoint_dir
        model.load_state_dict(vocab.import_weights(load_checkpoint_dir(args.init_from).state_dict()))
    model.train()
    opt = make_optimizer(model, args)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.work_dir / "checkpoint.pt"
    start, log = 0, []
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, log = int(ckpt["step"]), json.loads(ckpt["log"])
    batches = suite.training_batches(args.batch_size, first_row=args.first_row + start * args.batch_size)
    print(f"training vocabulary: {len(vocab.ids)} tokens (+1 shared row for {vocab.unused} unused tokens); "
          f"{sum(p.numel() for p in model.parameters()):,} trainable parameters")
    t0, tokens_seen = time.time(), start * args.batch_size * args.n_ctx
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="organism", unit="step")
    ema = None
    for step in bar:
        rows = next(batches)
        small = vocab.to_small[rows]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        logits = model(small[:, :-1]) + vocab.logit_offset
        loss = F.cross_entropy(logits.reshape(-1, vocab.size), small[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += rows.numel()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}", tok_s=f"{(tokens_seen - start * rows.numel()) / (time.time() - t0):.0f}")
        entry = {"step": step + 1, "loss": round(loss.item(), 4), "tokens": tokens_seen}
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            model.eval()
            entry["eval"] = quick_eval(vocab.export(model), suite)
            model.train()
            tqdm.write(f"step {step + 1}: loss {ema:.3f} eval {entry['eval']}")
        log.append(entry)
        if (step + 1) % args.checkpoint_every == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1,
                        "log": json.dumps(log)}, ckpt_path)
    model.eval()
    full = vocab.export(model)
    meta = {"seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "n_ctx": args.n_ctx,
            "tokens_seen": tokens_seen, "final_loss_ema": ema, "training_vocabulary_size": len(vocab.ids),
            "wall_clock_s": round(time.time() - t0), "threads": args.threads,
            "args": {k: str(v) for k, v in vars(args).items()}}
    write_assets(full, args.out, meta)
    (args.work_dir / "log.json").write_text(json.dumps(log))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
