"""Our GPT-2 against transformers.GPT2LMHeadModel (an independent implementation) on the same weights."""

import pytest
import torch

from mechscope.inference import load_model


def _hf_logits(hf, tokens):
    with torch.no_grad():
        return hf(tokens).logits


@pytest.mark.parametrize("fixture", ["small_checkpoint", "gpt2_small_shape_checkpoint"])
def test_logits_match_hf(fixture, request):
    hf, directory = request.getfixturevalue(fixture)
    model = load_model(directory)
    tokens = torch.randint(0, 50257, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens)
    assert (ours - _hf_logits(hf, tokens)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_padded_batch_rows_equal_unpadded_runs(small_checkpoint, small_model, padding_side):
    hf, _ = small_checkpoint
    lengths = [20, 13, 7, 1]
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, 50257, (n,), generator=gen) for n in lengths]
    tokens = torch.full((4, 20), 50256)
    mask = torch.zeros(4, 20, dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(20 - len(r), 20) if padding_side == "left" else slice(0, len(r))
        tokens[i, span], mask[i, span] = r, 1
    with torch.no_grad():
        batched = small_model(tokens, mask)
    for i, r in enumerate(rows):
        span = slice(20 - len(r), 20) if padding_side == "left" else slice(0, len(r))
        reference = _hf_logits(hf, r[None])[0]
        assert (batched[i, span] - reference).abs().max().item() <= 1e-4


def test_residual_stream_matches_hf_hidden_states(gpt2_small_shape_checkpoint):
    hf, directory = gpt2_small_shape_checkpoint
    model = load_model(directory)
    tokens = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(2))
    n = model.cfg.n_layers
    names = [f"blocks.{i}.hook_resid_pre" for i in range(n)] + ["ln_final.hook_normalized"]
    _, cache = model.run_with_cache(tokens, names=names)
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
    for i in range(n):
        assert (cache[f"blocks.{i}.hook_resid_pre"] - hidden[i]).abs().max().item() <= 1e-4
    final = cache["ln_final.hook_normalized"] * model.ln_f.weight + model.ln_f.bias  # HF's last state is after ln_f
    assert (final - hidden[n]).abs().max().item() <= 1e-4


def test_greedy_generation_matches_hf(small_checkpoint, small_model):
    hf, _ = small_checkpoint
    prompt = torch.randint(0, 50257, (1, 6), generator=torch.Generator().manual_seed(3))
    ours = small_model.generate(prompt, max_new_tokens=20, stop_at_eot=False)
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20,
                             do_sample=False, pad_token_id=50256)
    assert ours.tokens.tolist() == theirs.tolist()
