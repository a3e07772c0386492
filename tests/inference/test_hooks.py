import threading

import pytest
import torch

from mechscope.inference import UnknownHookError, ZeroAblate, hooks_scope


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(0))


def test_residual_identities_and_per_head_writes(small_model, tokens):
    names = lambda n: not n.endswith(("_input",))  # noqa: E731 - everything but the split q/k/v inputs
    _, cache = small_model.run_with_cache(tokens, names=names)
    attn = small_model.h[0].attn
    for layer in range(small_model.cfg.n_layers):
        p = f"blocks.{layer}"
        summed = cache[f"{p}.attn.hook_result"].sum(2) + small_model.h[layer].attn.c_proj.bias
        assert torch.allclose(summed, cache[f"{p}.hook_attn_out"], atol=1e-5)
        assert torch.allclose(cache[f"{p}.hook_resid_mid"], cache[f"{p}.hook_resid_pre"] + cache[f"{p}.hook_attn_out"], atol=1e-6)
        assert torch.allclose(cache[f"{p}.hook_resid_post"], cache[f"{p}.hook_resid_mid"] + cache[f"{p}.hook_mlp_out"], atol=1e-6)
        # per-head result is z_h @ W_O[h]
        z = cache[f"{p}.attn.hook_z"]
        manual = torch.einsum("bphd,hdm->bphm", z, small_model.h[layer].attn.W_O)
        assert torch.allclose(manual, cache[f"{p}.attn.hook_result"], atol=1e-5)
    assert attn.W_Q.shape == (4, 64, 16)


def test_split_qkv_inputs_do_not_change_the_output(small_model, tokens):
    plain = small_model(tokens)
    _, cache = small_model.run_with_cache(tokens, names=["blocks.1.hook_q_input", "blocks.1.hook_k_input"])
    hooked = small_model(tokens, fwd_hooks={"blocks.1.hook_v_input": lambda x, ctx: x})
    assert cache["blocks.1.hook_q_input"].shape == (2, 12, 4, 64)
    assert torch.allclose(plain, hooked, atol=1e-5)


def test_unknown_hook_lists_close_matches(small_model, tokens):
    with pytest.raises(UnknownHookError, match="blocks.0.hook_resid_pre"):
        small_model(tokens, fwd_hooks={"blocks.0.hook_resid_pr": lambda x, ctx: None})


def test_backward_hooks_see_autograd_gradients(small_model, tokens):
    grads = {}
    name = "blocks.1.hook_resid_mid"

    def keep(x, ctx):
        x = x.detach().requires_grad_(True)
        grads["act"] = x
        return x

    logits = small_model(tokens, fwd_hooks={name: keep},
                         bwd_hooks={name: lambda g, ctx: grads.__setitem__("hook", g)})
    logits[:, -1, 0].sum().backward()
    assert torch.equal(grads["hook"], grads["act"].grad)


def test_hooks_scope_is_per_thread(small_model, tokens):
    plain = small_model(tokens)
    ablated = small_model(tokens, interventions=[ZeroAblate("blocks.0.hook_attn_out")])
    assert not torch.allclose(plain, ablated)
    seen = {}
    barrier = threading.Barrier(2)

    def with_scope():
        with hooks_scope({"blocks.0.hook_attn_out": lambda x, ctx: torch.zeros_like(x)}):
            barrier.wait()
            seen["scoped"] = small_model(tokens)

    def without_scope():
        barrier.wait()
        seen["plain"] = small_model(tokens)

    threads = [threading.Thread(target=with_scope), threading.Thread(target=without_scope)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert torch.allclose(seen["scoped"], ablated, atol=1e-6)
    assert torch.allclose(seen["plain"], plain, atol=1e-6)


def test_threads_with_different_interventions_do_not_interfere(small_model, tokens):
    heads = [ZeroAblate("blocks.1.attn.hook_z", head=h) for h in range(4)]
    serial = [small_model(tokens, interventions=[iv]) for iv in heads]
    results: dict[int, list[torch.Tensor]] = {h: [] for h in range(4)}

    def worker(h):
        for _ in range(5):
            results[h].append(small_model(tokens, interventions=[heads[h]]))

    threads = [threading.Thread(target=worker, args=(h,)) for h in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for h in range(4):
        for out in results[h]:
            assert torch.allclose(out, serial[h], atol=1e-6)
