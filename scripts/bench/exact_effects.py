#!/usr/bin/env python
"""Cost of the exact-ablation column (issue 23): the node table of a 15-token prompt with
``exact_top_n=50`` against the same table without it, measured in one run:

  (table with exact column − table) / table                            target <= 2

    python scripts/bench/exact_effects.py [--model organism|gpt2-shape] [--repeats 7] [--threads 2]

``gpt2-shape``: gpt2-small's shape with random weights. Take the figures on an idle machine.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from timing import median_time  # scripts/bench/timing.py

PROMPT = "When Mary and John went to the store, John gave a drink to"   # 15 tokens with BOS


def _model(name: str):
    from mechscope.inference import load_model
    if name == "organism":
        return load_model("organism")
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(HFConfig()).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        return load_model(d)


def main() -> None:
    from mechscope.activation_server.engine.engine import Engine
    from mechscope.activation_server.schemas import AttributionRequest

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="organism", choices=["organism", "gpt2-shape"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=50)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    engine = Engine(_model(args.model), reference_tokens=torch.zeros(1, 8, dtype=torch.long))
    base = {"prompts": [{"text": PROMPT}], "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": 20}
    table = AttributionRequest.model_validate(base)
    exact = AttributionRequest.model_validate({**base, "exact_top_n": args.rows})
    result = engine.attribute(exact)
    rows = sum(r.values[0].exact_effect is not None for r in result.nodes)
    assert len(result.prompts[0].tokens) == 15 and rows == args.rows, (len(result.prompts[0].tokens), rows)
    t_table = median_time(lambda: engine.attribute(table), args.repeats)
    t_exact = median_time(lambda: engine.attribute(exact), args.repeats)
    print(f"model {args.model}, 15 tokens, {rows} exact rows, {args.threads} threads, median of {args.repeats}")
    print(f"node table                {t_table * 1e3:8.2f} ms")
    print(f"node table + exact column {t_exact * 1e3:8.2f} ms")
    print(f"exact column / node table {(t_exact - t_table) / t_table:8.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
