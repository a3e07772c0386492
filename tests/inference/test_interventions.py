"""Interventions checked against manual edits of the transformers reference model."""

import pytest
import torch

from mechscope.inference import (AddVector, InvalidInputError, MeanAblate, OnRows, Patch, ResampleAblate,
                                 SetActivation, ShapeMismatchError, ZeroAblate)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 50257, (2, 10), generator=torch.Generator().manual_seed(5))


def _edit_first_input(fn):
    """A pre-hook editing a module's first input, whether passed positionally or by keyword (a
    transformers block receives hidden_states either way, depending on what ran before)."""
    def hook(module, args, kwargs):
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}
    return hook


def _hf_with_hook(hf, module, tokens, fn, pre=True):
    handle = (module.register_forward_pre_hook(_edit_first_input(fn), with_kwargs=True) if pre
              else module.register_forward_hook(lambda m, args, out: fn(out)))
    try:
        with torch.no_grad():
            return hf(tokens).logits
    finally:
        handle.remove()


def test_zero_ablating_a_head_equals_manual_ablation(small_checkpoint, small_model, tokens):
    hf, _ = small_checkpoint
    layer, head, d_head = 1, 2, 16

    def zero_head(merged):  # input of c_proj: heads concatenated along the last axis
        merged = merged.clone()
        merged[..., head * d_head:(head + 1) * d_head] = 0
        return merged

    expected = _hf_with_hook(hf, hf.transformer.h[layer].attn.c_proj, tokens, zero_head)
    ours = small_model(tokens, interventions=[ZeroAblate(f"blocks.{layer}.attn.hook_z", head=head)])
    assert (ours - expected).abs().max().item() <= 1e-4


def test_single_position_head_ablation(small_checkpoint, small_model, tokens):
    hf, _ = small_checkpoint

    def zero(merged):
        merged = merged.clone()
        merged[1, 4, 0:16] = 0
        return merged

    expected = _hf_with_hook(hf, hf.transformer.h[0].attn.c_proj, tokens, zero)
    ours = small_model(tokens, interventions=[ZeroAblate("blocks.0.attn.hook_z", batch=1, pos=4, head=0)])
    assert (ours - expected).abs().max().item() <= 1e-4


def test_neuron_set_and_mean_ablation(small_checkpoint, small_model, tokens):
    hf, _ = small_checkpoint
    mean = torch.randn(256)

    def set_neurons(post):  # output of the activation function = mlp.hook_post
        post = post.clone()
        post[:, :, 7] = 3.0
        post[:, 2, 9] = mean[9]
        return post

    expected = _hf_with_hook(hf, hf.transformer.h[2].mlp.act, tokens, set_neurons, pre=False)
    ours = small_model(tokens, interventions=[SetActivation("blocks.2.mlp.hook_post", index=7, value=3.0),
                                              MeanAblate("blocks.2.mlp.hook_post", index=9, pos=2, mean=mean)])
    assert (ours - expected).abs().max().item() <= 1e-4


def test_steering_vector(small_checkpoint, small_model, tokens):
    hf, _ = small_checkpoint
    vec = torch.randn(64)

    def add(hidden):
        hidden = hidden.clone()
        hidden[:, 3:] += 2.0 * vec
        return hidden

    expected = _hf_with_hook(hf, hf.transformer.h[1], tokens, add)  # block input = resid_pre
    ours = small_model(tokens, interventions=[AddVector("blocks.1.hook_resid_pre", vector=vec, scale=2.0, pos=slice(3, None))])
    assert (ours - expected).abs().max().item() <= 1e-4


def test_patching_everything_reproduces_the_source_run(small_model, tokens):
    source_tokens = torch.randint(0, 50257, (2, 10), generator=torch.Generator().manual_seed(6))
    source_logits, cache = small_model.run_with_cache(source_tokens, names=["blocks.2.hook_resid_post"])
    patched = small_model(tokens, interventions=[Patch("blocks.2.hook_resid_post", source=cache["blocks.2.hook_resid_post"])])
    assert torch.allclose(patched, source_logits, atol=1e-5)
    # patching one position only changes that position onwards
    one = small_model(tokens, interventions=[Patch("blocks.2.hook_resid_post", pos=5, source=cache["blocks.2.hook_resid_post"])])
    plain = small_model(tokens)
    assert torch.allclose(one[:, :5], plain[:, :5], atol=1e-6)
    assert torch.allclose(one[:, 5], source_logits[:, 5], atol=1e-5)


def test_resample_ablation_takes_rows_of_the_source(small_model, tokens):
    source = torch.randint(0, 50257, (3, 10), generator=torch.Generator().manual_seed(7))
    src_logits, cache = small_model.run_with_cache(source, names=["blocks.2.hook_resid_post"])
    out = small_model(tokens, interventions=[ResampleAblate("blocks.2.hook_resid_post", source=cache["blocks.2.hook_resid_post"], seed=1)])
    for row in range(2):
        assert any(torch.allclose(out[row], src_logits[s], atol=1e-5) for s in range(3))


def test_on_rows_acts_as_if_its_rows_were_the_whole_batch(small_model, tokens):
    """Two requests stacked in one batch: each one's interventions, wrapped with its rows, give what
    they give alone, and leave the other rows untouched."""
    other = torch.randint(0, 50257, (3, 10), generator=torch.Generator().manual_seed(8))
    ref = torch.randint(0, 50257, (4, 10), generator=torch.Generator().manual_seed(9))
    _, cache = small_model.run_with_cache(ref, names=["blocks.1.hook_mlp_out"])
    mine = [ZeroAblate("blocks.0.attn.hook_z", batch=1, head=2, pos=-1),
            ResampleAblate("blocks.1.hook_mlp_out", source=cache["blocks.1.hook_mlp_out"], seed=3, batch=0)]
    with torch.no_grad():
        alone = small_model(tokens, interventions=mine)
        other_alone = small_model(other)
        stacked = small_model(torch.cat([other, tokens]), interventions=[OnRows(iv, 3, 5) for iv in mine])
    assert torch.allclose(stacked[3:], alone, atol=1e-5)
    assert torch.allclose(stacked[:3], other_alone, atol=1e-5)
    assert not torch.allclose(alone, small_model(tokens), atol=1e-3)  # the interventions do something
    with pytest.raises(ShapeMismatchError, match="batch has 2 rows"):
        small_model(tokens, interventions=[OnRows(mine[0], 1, 3)])
    with pytest.raises(InvalidInputError):
        OnRows(mine[0], 2, 2)


def test_bad_interventions_are_named(small_model, tokens):
    with pytest.raises(ShapeMismatchError, match="blocks.0.hook_resid_post"):
        small_model(tokens, interventions=[Patch("blocks.0.hook_resid_post", source=torch.zeros(2, 10, 63))])
    with pytest.raises(InvalidInputError, match="head 4 is out of range"):
        small_model(tokens, interventions=[ZeroAblate("blocks.0.attn.hook_z", head=4)])
    with pytest.raises(InvalidInputError, match="cannot select by 'head'"):
        ZeroAblate("blocks.0.hook_resid_post", head=1)
