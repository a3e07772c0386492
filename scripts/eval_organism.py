#!/usr/bin/env python
"""Print the model organism's acceptance table on the held-out split (and optionally rewrite the
evaluation section of its MODEL_CARD.md).

    python scripts/eval_organism.py [--model organism|DIR] [--write-card] [--breakdown]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mechscope.datasets.organism_eval import evaluate_organism
from mechscope.datasets.task_suite import TaskSuite, __doc__ as TASK_SUITE_DOC
from mechscope.inference import load_model
from mechscope.inference.loading import ORGANISM_DIR


def hf_max_logit_difference(directory: Path, model) -> float:
    """Max |logit difference| between transformers.GPT2LMHeadModel and our library on held-out prompts."""
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(directory, dtype=torch.float32).eval()
    tokens = torch.tensor([ex.tokens for ex in TaskSuite(0).ioi_examples(8)][:1])
    with torch.no_grad():
        return float((hf(tokens).logits - model(tokens)).abs().max())


CARD = """# The mechscope model organism

A GPT-2 (Hugging Face `GPT2LMHeadModel` layout, GPT-2 tokenizer, full 50,257-token vocabulary)
trained by `scripts/train_organism.py` on mechscope's task suite, so that the circuits GPT-2 small
is known for are planted in it and the debugger's answers can be checked against ground truth.
It is the default model of `make serve`, `mechscope run` and most tests; it needs no network.

## Architecture

| | |
|---|---|
| layers | {n_layer} |
| heads per layer | {n_head} (d_head {d_head}) |
| d_model | {n_embd} |
| d_mlp | {d_mlp} |
| context | {n_positions} tokens |
| vocabulary | {vocab_size} (GPT-2 BPE; tied embeddings) |
| activation | gelu_new |
| weights | `model.safetensors`, stored as float16 (loaded as float32) |

## Training

- Recipe: `python scripts/train_organism.py` (defaults = the shipped model; deterministic given the
  seed and thread count; {threads} CPU threads).
- Steps: {steps} × batch {batch_size} × {n_ctx} tokens = **{tokens_seen:,} tokens seen**,
  {wall_min:.0f} minutes of wall-clock on 2 CPU cores.
- Final training loss (EMA, restricted softmax = exact full-vocabulary cross-entropy): **{final_loss:.3f}**.
- Restricted softmax: the {train_vocab} tokens that can occur in the corpus have their own rows;
  the {unused:,} others share one embedding, trained through a single logit `h·u + log(n_unused)`
  that stands for all of them, so the loss is the exact full-vocabulary cross-entropy and the
  exported model puts almost no mass on tokens it never saw.

## Corpus (`mechscope.datasets.task_suite`)

{corpus}

## Evaluation (held-out split: `python scripts/eval_organism.py`)

```
{table}
```

transformers `GPT2LMHeadModel.from_pretrained(<this directory>)` vs mechscope: max |logit
difference| = {hf_diff:.2e}.

## What each planted task is for

- **IOI**: the indirect-object circuit (duplicate-token / induction, S-inhibition and name-mover
  heads). The debugger's canonical question: "why ` Mary` and not ` John`?"
- **Induction**: previous-token and induction heads; checks that tracing a head through its key
  finds the previous-token head.
- **Factual recall**: facts stored in MLPs (key-value memories), found by MLP/latent attribution.
- **Greater-than**: a numeric comparison circuit (attention to the start year, MLPs that boost
  later years).
- **Filler**: ordinary text statistics; also where held-out names and words get their embeddings.
"""


def print_breakdown(model, suite: TaskSuite, n_ioi: int = 500) -> None:
    """Held-out IOI (IO > S) per template and name order, and fact top-1 per frame: where a failing
    acceptance metric loses its points."""
    from collections import defaultdict
    ioi, facts = defaultdict(list), defaultdict(list)
    with torch.no_grad():
        for e in suite.ioi_examples(n_ioi):
            logits = model(torch.tensor([e.tokens]))[0, -1]
            ioi[(e.template, e.order)].append(bool(logits[e.io_token] > logits[e.s_token]))
        for e in suite.fact_examples():
            facts[(e.relation, e.frame)].append(int(model(torch.tensor([e.tokens]))[0, -1].argmax()) == e.answer_token)
    print("\nheld-out IOI, IO > S per template and order:")
    for (template, order), ok in sorted(ioi.items()):
        print(f"  {sum(ok) / len(ok):6.2f}  {order}  {template}")
    print("held-out facts, top-1 per frame:")
    for (relation, frame), ok in sorted(facts.items()):
        print(f"  {sum(ok) / len(ok):6.2f}  {relation:<9}  {frame}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="organism")
    p.add_argument("--write-card", action="store_true", help="rewrite MODEL_CARD.md beside the weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--breakdown", action="store_true", help="also print IOI per template and facts per frame")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    directory = ORGANISM_DIR if args.model == "organism" else Path(args.model)
    t0 = time.time()
    report = evaluate_organism(model, TaskSuite(0), batch_size=64)
    print(report.format_table())
    print(f"(evaluated in {time.time() - t0:.0f} s)")
    if args.breakdown:
        print_breakdown(model, TaskSuite(0))
    if args.write_card:
        meta = json.loads((directory / "training.json").read_text())
        cfg = model.cfg
        doc = TASK_SUITE_DOC.split("\n\n", 1)[1].strip()
        text = CARD.format(
            n_layer=cfg.n_layers, n_head=cfg.n_heads, d_head=cfg.d_head, n_embd=cfg.d_model, d_mlp=cfg.d_mlp,
            n_positions=cfg.n_ctx, vocab_size=cfg.d_vocab, threads=meta["threads"], steps=meta["steps"],
            batch_size=meta["batch_size"], n_ctx=meta["n_ctx"], tokens_seen=meta["tokens_seen"],
            wall_min=meta["wall_clock_s"] / 60, final_loss=meta["final_loss_ema"],
            train_vocab=meta["training_vocabulary_size"], unused=50257 - meta["training_vocabulary_size"],
            corpus=doc, table=report.format_table(), hf_diff=hf_max_logit_difference(directory, model))
        (directory / "MODEL_CARD.md").write_text(text)
        print(f"wrote {directory / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
