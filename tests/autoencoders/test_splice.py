"""SAEs spliced into the forward pass: exactness of the error term, latent edits, gradients."""

import pytest
import torch

from mechscope.autoencoders import SAEConfig, SAESplice, SparseAutoencoder
from mechscope.inference import Patch, UnknownHookError, ZeroAblate


def _random_sae(d_in: int, n: int, hook_point: str, activation="relu", k=None, seed=0) -> SparseAutoencoder:
    cfg = SAEConfig(d_in=d_in, n_latents=n, activation=activation, k=k, hook_point=hook_point)
    gen = torch.Generator().manual_seed(seed)
    tensors = {"W_enc": torch.randn(d_in, n, generator=gen) / d_in ** 0.5, "b_enc": torch.randn(n, generator=gen) * 0.01,
               "W_dec": torch.randn(n, d_in, generator=gen) / n ** 0.5, "b_dec": torch.randn(d_in, generator=gen) * 0.01}
    return SparseAutoencoder.from_tensors(cfg, tensors)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 50257, (2, 11), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def splices():
    return [SAESplice(_random_sae(256, 512, "blocks.1.mlp.hook_post")),
            SAESplice(_random_sae(64, 128, "blocks.0.hook_attn_out", activation="topk", k=8, seed=1))]


def test_splicing_leaves_logits_unchanged(small_model, tokens, splices):
    plain = small_model(tokens)
    spliced = small_model(tokens, splices=splices)
    assert (spliced - plain).abs().max().item() <= 1e-5


def test_ablating_a_latent_changes_the_output_by_its_decoder_contribution(small_model, tokens, splices):
    point = "blocks.1.mlp.hook_post"
    sae = splices[0].sae
    names = [f"{point}.hook_sae_acts_post", f"{point}.hook_sae_output"]
    _, clean = small_model.run_with_cache(tokens, names=names, splices=splices)
    latents = clean[f"{point}.hook_sae_acts_post"]
    latent = int(latents[1, -1].argmax())  # an active latent
    assert latents[1, -1, latent] > 0
    _, edited = small_model.run_with_cache(tokens, names=names, splices=splices, interventions=[
        ZeroAblate(f"{point}.hook_sae_acts_post", batch=1, pos=-1, index=latent)])
    change = edited[f"{point}.hook_sae_output"][1, -1] - clean[f"{point}.hook_sae_output"][1, -1]
    expected = -latents[1, -1, latent] * sae.W_dec[latent]
    assert torch.allclose(change, expected, atol=1e-5)
    others = edited[f"{point}.hook_sae_output"][:, :-1] - clean[f"{point}.hook_sae_output"][:, :-1]
    assert others.abs().max().item() == 0.0


def test_sae_hook_points_accept_patches_and_report_unknown_names(small_model, tokens, splices):
    point = "blocks.0.hook_attn_out"
    other = torch.randint(0, 50257, (2, 11), generator=torch.Generator().manual_seed(9))
    _, src = small_model.run_with_cache(other, names=[f"{point}.hook_sae_acts_post"], splices=splices)
    patched = small_model(tokens, splices=splices, interventions=[
        Patch(f"{point}.hook_sae_acts_post", source=src[f"{point}.hook_sae_acts_post"])])
    assert not torch.allclose(patched, small_model(tokens))
    with pytest.raises(UnknownHookError, match="blocks.0.hook_attn_out.hook_sae_acts_post"):
        small_model(tokens, splices=splices, fwd_hooks={f"{point}.hook_sae_acts_pst": lambda x, c: None})
    with pytest.raises(UnknownHookError):  # SAE points exist only while the SAE is spliced
        small_model(tokens, fwd_hooks={f"{point}.hook_sae_acts_post": lambda x, c: None})


def test_latent_gradients_equal_decoder_times_output_gradient(small_model, tokens, splices):
    point = "blocks.1.mlp.hook_post"
    saved = {}

    def keep(name):
        def fn(x, ctx):
            saved[name] = x
        return fn

    names = [f"{point}.hook_sae_acts_post", f"{point}.hook_sae_output"]

    def make_leaf(x, ctx):
        return x.detach().requires_grad_(True)

    with torch.enable_grad():  # parameters need no grad: make the embeddings a leaf that does
        logits = small_model(tokens, splices=splices, fwd_hooks={"hook_embed": make_leaf, **{n: keep(n) for n in names}})
        loss = logits[:, -1, 42].sum()
        g_latents, g_out = torch.autograd.grad(loss, [saved[names[0]], saved[names[1]]])
    sae = splices[0].sae
    assert torch.allclose(g_latents, g_out @ sae.W_dec.T, atol=1e-6)
