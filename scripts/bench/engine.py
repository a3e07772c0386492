#!/usr/bin/env python
"""Engine benchmarks on gpt2-small's shape (random weights), ratios measured in one run:

  full node table for one 32-token prompt / one HF forward+backward     target <= 1.3
  all-heads patching sweep, batched / the same sweep as a loop of single patched forwards
                                                                        target <= 0.2

    python scripts/bench/engine.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from timing import median_time  # scripts/bench/timing.py




def main() -> None:
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    from mechscope.activation_server.engine.engine import Engine
    from mechscope.activation_server.engine.patching import patching_sweep
    from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PatchingSweepRequest, PromptSpec
    from mechscope.inference import Patch, gpt2_tokenizer, load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(HFConfig()).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        model = load_model(d)
    engine = Engine(model, reference_tokens=torch.zeros(1, 8, dtype=torch.long))
    tok = gpt2_tokenizer()
    words = " When Mary and John went to the store, John gave a drink to Mary. Then the"
    text = tok.decode((tok.encode(words) * 4)[:31]) + " to"
    assert len(tok.encode(text)) == 32, len(tok.encode(text))
    loss = LossSpec(targets=[" Mary"], distractors=[" John"])
    request = AttributionRequest(prompts=[PromptSpec(text=text)], loss=loss, top_k=20)
    tokens = torch.tensor([tok.encode(text)])
    mary, john = tok.encode(" Mary")[0], tok.encode(" John")[0]

    def hf_forward_backward():
        emb = hf.transformer.wte(tokens).detach().requires_grad_(True)
        logits = hf(inputs_embeds=emb).logits
        (logits[0, -1, mary] - logits[0, -1, john]).backward()

    t_hf = median_time(hf_forward_backward, args.repeats)
    t_table = median_time(lambda: engine.attribute(request), args.repeats)

    corrupted = text[: text.rindex("John")] + "Mary" + text[text.rindex("John") + 4:]
    sweep = PatchingSweepRequest(clean=text, corrupted=corrupted, loss=loss, kind="heads")
    t_batched = median_time(lambda: patching_sweep(model, sweep), max(1, args.repeats // 2))
    clean_t = torch.tensor([tok.encode(text)])
    corr_t = torch.tensor([tok.encode(corrupted)])

    def sequential():
        with torch.no_grad():
            names = [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
            _, cache = model.run_with_cache(clean_t, names=names)
            for l in range(model.cfg.n_layers):
                for h in range(model.cfg.n_heads):
                    model(corr_t, interventions=[Patch(names[l], head=h, source=cache[names[l]])])

    t_seq = median_time(sequential, max(1, args.repeats // 2))
    print(f"gpt2-small shape, 32-token prompt, {torch.get_num_threads()} threads, medians")
    print(f"HF forward+backward          {t_hf * 1000:8.1f} ms")
    print(f"full node table (attribute)  {t_table * 1000:8.1f} ms   ratio {t_table / t_hf:.2f} (target <= 1.3)")
    print(f"all-heads sweep, batched     {t_batched * 1000:8.1f} ms")
    print(f"all-heads sweep, sequential  {t_seq * 1000:8.1f} ms   ratio batched/sequential {t_batched / t_seq:.2f} (target <= 0.2)")


if __name__ == "__main__":
    main()
