import pytest
import torch

from mechscope.inference import (EmptyPromptError, InvalidInputError, PromptTooLongError, TokenOutOfRangeError,
                                 UnknownHookError, ZeroAblate)


def test_cache_stores_only_what_is_asked(small_model):
    tokens = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(0))
    logits, cache = small_model.run_with_cache(tokens, names=["blocks.1.mlp.hook_post"])
    assert list(cache) == ["blocks.1.mlp.hook_post"]
    assert cache["blocks.1.mlp.hook_post"].shape == (2, 9, 256)
    with pytest.raises(UnknownHookError, match="blocks.1.mlp.hook_post"):
        cache["blocks.1.mlp.hook_pos"]
    assert torch.allclose(logits, small_model(tokens))


def test_cache_filters_layers_and_positions(small_model):
    tokens = torch.randint(0, 50257, (1, 9), generator=torch.Generator().manual_seed(1))
    _, full = small_model.run_with_cache(tokens)
    assert len(full) == len([n for n in small_model.hook_names if not n.endswith(("_input", "hook_result"))])
    _, part = small_model.run_with_cache(tokens, names=lambda n: n.endswith("hook_pattern") or n.endswith("resid_post"),
                                         layers=[2], positions=slice(-3, None))
    assert sorted(part) == ["blocks.2.attn.hook_pattern", "blocks.2.hook_resid_post"]
    # (layers 0-1 take the fused attention path in the partial run: equal up to float rounding)
    assert torch.allclose(part["blocks.2.hook_resid_post"], full["blocks.2.hook_resid_post"][:, -3:], atol=1e-6)
    assert torch.allclose(part["blocks.2.attn.hook_pattern"], full["blocks.2.attn.hook_pattern"][:, :, -3:], atol=1e-6)


def test_cache_sees_interventions(small_model):
    tokens = torch.randint(0, 50257, (1, 5), generator=torch.Generator().manual_seed(2))
    _, cache = small_model.run_with_cache(tokens, names=["blocks.0.attn.hook_z"],
                                          interventions=[ZeroAblate("blocks.0.attn.hook_z", head=1)])
    assert cache["blocks.0.attn.hook_z"][:, :, 1].abs().max() == 0
    assert cache["blocks.0.attn.hook_z"][:, :, 0].abs().max() > 0


def test_bad_inputs_raise_typed_errors(small_model):
    with pytest.raises(EmptyPromptError, match="empty"):
        small_model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(PromptTooLongError, match="65 tokens exceed the model's context of 64"):
        small_model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(TokenOutOfRangeError, match="token id 50257"):
        small_model(torch.tensor([[1, 50257]]))
    with pytest.raises(TokenOutOfRangeError, match="token id -1"):
        small_model(torch.tensor([[-1, 2]]))
    with pytest.raises(UnknownHookError, match="did you mean 'blocks.0.attn.hook_pattern'"):
        small_model.run_with_cache(torch.tensor([[1, 2]]), names=["blocks.0.attn.hook_patern"])


def test_logit_positions_unembed_only_those_positions(small_model):
    tokens = torch.randint(0, 50257, (3, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(tokens)
    mask[1, 6:] = 0  # a right-padded row: its last real position is 5
    positions = torch.tensor([8, 5, 0])
    with torch.no_grad():
        full = small_model(tokens, mask)
        some = small_model(tokens, mask, logit_positions=positions)
    assert some.shape == (3, 1, small_model.cfg.d_vocab)
    assert torch.allclose(some[:, 0], full[torch.arange(3), positions], atol=1e-5)
    with pytest.raises(InvalidInputError, match="logit_positions"):
        small_model(tokens, logit_positions=torch.tensor([1, 2]))
    with torch.no_grad():
        final = small_model(tokens, mask, logit_positions=positions, return_final=True)
        resid = small_model(tokens, mask, stop_at_layer=small_model.cfg.n_layers)
    assert final.shape == (3, 1, small_model.cfg.d_model)
    assert torch.allclose(final @ small_model.wte.weight.T, some, atol=1e-5)   # logits = ln_final output · W_U
    assert torch.allclose(final[:, 0], small_model.final_norm(resid[torch.arange(3), positions]), atol=1e-5)
