"""SparseAutoencoder against an independent NumPy reference, for every activation and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.autoencoders import SAEConfig, SparseAutoencoder
from mechscope.inference.errors import InvalidInputError, ShapeMismatchError

from .helpers import D_IN, N_LATENTS, Reference, random_inputs, random_sae

CASES = [
    dict(activation="relu"),
    dict(activation="identity"),
    dict(activation="topk", k=8),
    dict(activation="topk", k=8, topk_postact="identity"),
    dict(activation="jumprelu"),
    dict(activation="batchtopk"),
    dict(activation="relu", apply_b_dec_to_input=False),
    dict(activation="topk", k=8, input_normalization="layer_norm"),
    dict(activation="relu", input_normalization="constant_norm_rescale"),
    dict(activation="jumprelu", input_normalization="expected_average_only_in", norm_scaling_factor=0.37),
]


def _reference(sae: SparseAutoencoder) -> Reference:
    c = sae.config
    return Reference(
        sae.tensors(), c.activation, k=c.k, normalization=c.input_normalization,
        factor=c.norm_scaling_factor, apply_b_dec=c.apply_b_dec_to_input, postact=c.topk_postact,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_encode_decode_match_reference(case):
    sae = random_sae(**case)
    ref = _reference(sae)
    x = random_inputs(3, 5, D_IN)
    with torch.no_grad():
        pre = sae.encode_pre(x)
        latents = sae.encode(x)
        recon = sae(x)
        out = sae.run(x)
        decoded = sae.decode(latents, sae.input_norm(x))
    assert pre.shape == (3, 5, N_LATENTS) and latents.shape == (3, 5, N_LATENTS) and recon.shape == x.shape
    np.testing.assert_allclose(pre.numpy(), ref.pre(x.numpy()), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(latents.numpy(), ref.latents(x.numpy()), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(recon.numpy(), ref.reconstruct(x.numpy()), rtol=1e-4, atol=1e-4)
    assert torch.equal(out.pre_activations, pre) and torch.equal(out.latents, latents)
    torch.testing.assert_close(out.reconstruction, recon)
    torch.testing.assert_close(decoded, recon)
    if case["activation"] in ("relu", "jumprelu", "batchtopk"):
        # a meaningful test: some latents fire, some do not
        assert 0 < (latents > 0).float().mean() < 1
    if case["activation"] == "topk":
        assert ((latents != 0).sum(-1) <= 8).all() and ((latents != 0).sum(-1) >= 6).all()


def test_any_leading_shape_gives_same_rows():
    sae = random_sae(activation="topk", k=8, input_normalization="layer_norm")
    x = random_inputs(2, 3, 4, D_IN)
    with torch.no_grad():
        batched = sae.encode(x)
        flat = sae.encode(x.reshape(-1, D_IN)).reshape(2, 3, 4, N_LATENTS)
        single = sae.encode(x[1, 2, 3])
    torch.testing.assert_close(batched, flat)
    torch.testing.assert_close(single, batched[1, 2, 3])


def test_decoder_contribution_sums_to_reconstruction():
    for case in (dict(activation="topk", k=8, input_normalization="layer_norm"), dict(activation="relu")):
        sae = random_sae(**case)
        x = random_inputs(4, D_IN)
        with torch.no_grad():
            out = sae.run(x)
            norm = sae.input_norm(x)
            total = sum(sae.decoder_contribution(i, out.latents[:, i], norm) for i in range(N_LATENTS))
            bias_only = sae.decode(torch.zeros_like(out.latents), norm)
        torch.testing.assert_close(total + bias_only, out.reconstruction, rtol=1e-4, atol=1e-4)


def test_decode_without_input_norm_for_per_example_normalisation_is_an_error():
    sae = random_sae(activation="topk", k=8, input_normalization="layer_norm")
    with pytest.raises(InvalidInputError, match="input_norm"):
        sae.decode(torch.zeros(2, N_LATENTS))


def test_bad_inputs_name_the_problem():
    sae = random_sae(activation="relu")
    with pytest.raises(ShapeMismatchError, match=r"\[2, 63\].*d_in=64"):
        sae.encode(torch.zeros(2, 63))
    with pytest.raises(ShapeMismatchError, match="n_latents=256"):
        sae.decode(torch.zeros(2, 255))
    with pytest.raises(InvalidInputError, match=r"latent_index.*\[0, 256\).*300"):
        sae.decoder_contribution(300, 1.0)


def test_config_validation_names_the_field():
    with pytest.raises(InvalidInputError, match="k=None"):
        SAEConfig(d_in=4, n_latents=8, activation="topk")
    with pytest.raises(InvalidInputError, match="unknown activation 'gelu'"):
        SAEConfig(d_in=4, n_latents=8, activation="gelu")
    with pytest.raises(InvalidInputError, match="norm_scaling_factor"):
        SAEConfig(d_in=4, n_latents=8, input_normalization="expected_average_only_in")


def test_config_dict_round_trip():
    sae = random_sae(activation="topk", k=8, hook_point="blocks.1.hook_mlp_out", source={"format": "x"})
    assert SAEConfig.from_dict(sae.config.to_dict()) == sae.config
