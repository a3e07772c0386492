"""Loading the public formats (OpenAI .pt, SAELens dirs) and mechscope's own; savers and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechscope.autoencoders import (
    SAEFormatError,
    WeightProcessing,
    load_openai_sae,
    load_sae,
    load_saelens_sae,
    save_sae,
)

from .helpers import D_IN, N_LATENTS, Reference, random_inputs, random_sae, random_tensors
from .writers import pre6_cfg, v6_cfg, write_openai_pt, write_saelens_dir

TOL = dict(rtol=1e-4, atol=1e-4)


def _check_against(sae, ref: Reference, x: torch.Tensor) -> None:
    with torch.no_grad():
        np.testing.assert_allclose(sae.encode(x).numpy(), ref.latents(x.numpy()), **TOL)
        np.testing.assert_allclose(sae(x).numpy(), ref.reconstruct(x.numpy()), **TOL)


# ------------------------------------------------------------------------------ OpenAI
@pytest.mark.parametrize("version,location,layer,hook", [
    ("", "mlp_post_act", 0, "blocks.0.mlp.hook_post"),
    ("_v4", "resid_delta_attn", 5, "blocks.5.hook_attn_out"),
    ("_v5_32k", "resid_post_attn", 7, "blocks.7.hook_resid_mid"),
    ("_v5_128k", "resid_post_mlp", 11, "blocks.11.hook_resid_post"),
    ("_v5_32k", "resid_delta_mlp", 3, "blocks.3.hook_mlp_out"),
])
def test_openai_versions_load_with_hook_point_from_layout(tmp_path, version, location, layer, hook):
    tensors = random_tensors()
    topk = version.startswith("_v5")
    path = tmp_path / "gpt2-small" / f"{location}{version}" / "autoencoders" / f"{layer}.pt"
    write_openai_pt(path, tensors, activation="TopK" if topk else "ReLU", k=8 if topk else None)
    sae = load_openai_sae(path)
    c = sae.config
    assert (c.d_in, c.n_latents, c.hook_point, c.model_name) == (D_IN, N_LATENTS, hook, "gpt2-small")
    assert c.activation == ("topk" if topk else "relu")
    assert c.input_normalization == ("layer_norm" if topk else "none")
    assert c.expected_weight_processing == WeightProcessing(center_writing_weights=False, fold_ln=False)
    assert set(sae.statistics) == {"stats_last_nonzero", "latents_activation_frequency", "latents_mean_square"}
    torch.testing.assert_close(sae.statistics["latents_mean_square"], torch.linspace(1, 2, N_LATENTS))
    ref = Reference(tensors, c.activation, k=8, normalization=c.input_normalization)
    _check_against(sae, ref, random_inputs(2, 7, D_IN))


def test_openai_v1_file_without_activation_key_is_relu(tmp_path):
    tensors = random_tensors()
    path = write_openai_pt(tmp_path / "ae.pt", tensors, drop=("activation", "activation_state_dict", "stats_last_nonzero"))
    sae = load_openai_sae(path, hook_point="blocks.1.hook_mlp_out")
    assert sae.config.activation == "relu" and sae.config.hook_point == "blocks.1.hook_mlp_out"
    _check_against(sae, Reference(tensors, "relu"), random_inputs(5, D_IN))


# ------------------------------------------------------------------------------ SAELens
def test_saelens_pre6_config_like_gpt2_small_res_jb(tmp_path):
    tensors = random_tensors()
    sparsity = torch.linspace(-5, -1, N_LATENTS)
    directory = write_saelens_dir(tmp_path / "blocks.3.hook_resid_pre", tensors, pre6_cfg(D_IN, N_LATENTS), sparsity)
    sae = load_saelens_sae(directory)
    c = sae.config
    assert (c.activation, c.hook_point, c.model_name, c.apply_b_dec_to_input) == ("relu", "blocks.3.hook_resid_pre", "gpt2-small", True)
    # trained with TransformerLens' default processing: centred writing weights
    assert c.expected_weight_processing.center_writing_weights is True
    assert torch.equal(sae.statistics["log_feature_sparsity"], sparsity)
    _check_against(sae, Reference(tensors, "relu"), random_inputs(4, D_IN))


def test_saelens_pre6_topk_reads_k_from_activation_fn_kwargs(tmp_path):
    tensors = random_tensors()
    cfg = pre6_cfg(D_IN, N_LATENTS) | {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8},
                                        "model_from_pretrained_kwargs": {"center_writing_weights": False}}
    sae = load_saelens_sae(write_saelens_dir(tmp_path / "d", tensors, cfg))
    assert (sae.config.activation, sae.config.k) == ("topk", 8)
    assert sae.config.expected_weight_processing == WeightProcessing(center_writing_weights=False, fold_ln=True)
    _check_against(sae, Reference(tensors, "topk", k=8), random_inputs(4, D_IN))


@pytest.mark.parametrize("architecture,extra,ref_kwargs", [
    ("standard", {}, dict(activation="relu")),
    ("standard", {"apply_b_dec_to_input": False}, dict(activation="relu", apply_b_dec=False)),
    ("topk", {"k": 8}, dict(activation="topk", k=8)),
    ("topk", {"k": 8, "normalize_activations": "layer_norm"}, dict(activation="topk", k=8, normalization="layer_norm")),
    ("jumprelu", {}, dict(activation="jumprelu")),
    ("jumprelu", {"normalize_activations": "constant_norm_rescale"}, dict(activation="jumprelu", normalization="constant_norm_rescale")),
    ("batchtopk", {"k": 4.5}, dict(activation="batchtopk")),
])
def test_saelens_v6_architectures(tmp_path, architecture, extra, ref_kwargs):
    tensors = random_tensors(threshold=architecture in ("jumprelu", "batchtopk"))
    directory = write_saelens_dir(tmp_path / "d", tensors, v6_cfg(architecture, D_IN, N_LATENTS, **extra))
    sae = load_saelens_sae(directory)
    assert sae.config.hook_point == "blocks.2.hook_resid_pre"
    _check_against(sae, Reference(tensors, **ref_kwargs), random_inputs(3, 4, D_IN))


def test_saelens_batchtopk_training_checkpoint_uses_global_threshold(tmp_path):
    tensors = random_tensors()
    tensors["topk_threshold"] = torch.tensor(0.2, dtype=torch.float64)
    sae = load_saelens_sae(write_saelens_dir(tmp_path / "d", tensors, v6_cfg("batchtopk", D_IN, N_LATENTS, k=8)))
    assert torch.equal(sae.threshold.detach(), torch.full((N_LATENTS,), 0.2))
    ref_tensors = {k: v for k, v in tensors.items() if k != "topk_threshold"} | {"threshold": torch.full((N_LATENTS,), 0.2)}
    _check_against(sae, Reference(ref_tensors, "batchtopk"), random_inputs(6, D_IN))


def test_saelens_expected_average_only_in_with_scaling_factor(tmp_path):
    tensors = random_tensors()
    cfg = v6_cfg("standard", D_IN, N_LATENTS, normalize_activations="expected_average_only_in")
    directory = write_saelens_dir(tmp_path / "d", tensors, cfg)
    factor = 0.25
    sae = load_saelens_sae(directory, norm_scaling_factor=factor)
    # SAELens folds the factor: W_enc * s, W_dec / s, b_dec / s, then runs with no normalisation.
    folded = {"W_enc": tensors["W_enc"] * factor, "b_enc": tensors["b_enc"],
              "W_dec": tensors["W_dec"] / factor, "b_dec": tensors["b_dec"] / factor}
    _check_against(sae, Reference(folded, "relu"), random_inputs(5, D_IN))


def test_saelens_finetuning_scaling_factor_multiplies_latents_before_decoding(tmp_path):
    tensors = random_tensors()
    scale = torch.linspace(0.5, 1.5, N_LATENTS)
    cfg = pre6_cfg(D_IN, N_LATENTS) | {"finetuning_scaling_factor": True, "sae_lens_training_version": "3.5.0"}
    sae = load_saelens_sae(write_saelens_dir(tmp_path / "d", tensors | {"scaling_factor": scale}, cfg))
    ref = Reference(tensors, "relu", decoder_scale=scale.double().numpy())
    _check_against(sae, ref, random_inputs(5, D_IN))
    assert "folded" in sae.config.source["scaling_factor"]


def test_saelens_all_ones_scaling_factor_is_accepted(tmp_path):
    tensors = random_tensors()
    directory = write_saelens_dir(tmp_path / "d", tensors | {"scaling_factor": torch.ones(N_LATENTS)}, pre6_cfg(D_IN, N_LATENTS))
    _check_against(load_saelens_sae(directory), Reference(tensors, "relu"), random_inputs(5, D_IN))


# ------------------------------------------------------------------------------ same weights, two formats
@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_openai_and_saelens_files_with_same_weights_give_identical_latents(tmp_path, kind):
    tensors = random_tensors(seed=7)
    openai_path = write_openai_pt(tmp_path / "ae.pt", tensors, activation="TopK" if kind == "topk" else "ReLU", k=8)
    cfg = (v6_cfg("topk", D_IN, N_LATENTS, k=8, normalize_activations="layer_norm") if kind == "topk"
           else v6_cfg("standard", D_IN, N_LATENTS))
    saelens_dir = write_saelens_dir(tmp_path / "sl", tensors, cfg)
    a, b = load_sae(openai_path), load_sae(saelens_dir)
    x = random_inputs(3, 9, D_IN)
    with torch.no_grad():
        assert torch.equal(a.encode(x), b.encode(x))
        assert torch.equal(a(x), b(x))
        assert (a.encode(x) != 0).any()


# ------------------------------------------------------------------------------ round trips
ROUND_TRIPS = [
    ("mechscope", dict(activation="relu")),
    ("mechscope", dict(activation="topk", k=8, topk_postact="identity", input_normalization="layer_norm")),
    ("mechscope", dict(activation="batchtopk", input_normalization="expected_average_only_in", norm_scaling_factor=2.0)),
    ("mechscope", dict(activation="jumprelu", apply_b_dec_to_input=False, input_normalization="constant_norm_rescale")),
    ("saelens", dict(activation="relu")),
    ("saelens", dict(activation="topk", k=8, input_normalization="layer_norm")),
    ("saelens", dict(activation="jumprelu", apply_b_dec_to_input=False)),
    ("saelens", dict(activation="batchtopk")),
    ("openai", dict(activation="relu")),
    ("openai", dict(activation="identity")),
    ("openai", dict(activation="topk", k=8, input_normalization="layer_norm")),
]


@pytest.mark.parametrize("fmt,case", ROUND_TRIPS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_round_trip(tmp_path, fmt, case):
    sae = random_sae(hook_point="blocks.2.hook_resid_post", model_name="organism", **case)
    sae.statistics["latents_activation_frequency"] = torch.rand(N_LATENTS)
    target = tmp_path / ("sae.pt" if fmt == "openai" else "sae")
    save_sae(sae, target, format=fmt)
    loaded = load_sae(target, hook_point="blocks.2.hook_resid_post" if fmt == "openai" else None)
    x = random_inputs(4, 3, D_IN)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded.encode_pre(x), sae.encode_pre(x))
        assert torch.equal(loaded(x), sae(x))
    assert loaded.config.hook_point == "blocks.2.hook_resid_post"
    if fmt == "mechscope":
        assert loaded.config == sae.config
    if fmt in ("mechscope", "openai"):
        assert torch.equal(loaded.statistics["latents_activation_frequency"], sae.statistics["latents_activation_frequency"])


@pytest.mark.parametrize("fmt,case,message", [
    ("openai", dict(activation="jumprelu"), "cannot hold a 'jumprelu'"),
    ("openai", dict(activation="relu", input_normalization="layer_norm"), "exactly for TopK"),
    ("openai", dict(activation="relu", apply_b_dec_to_input=False), "apply_b_dec_to_input=False"),
    ("saelens", dict(activation="identity"), "no 'identity' activation"),
    ("saelens", dict(activation="topk", k=3, topk_postact="identity"), "applies ReLU"),
])
def test_savers_refuse_what_their_format_cannot_hold(tmp_path, fmt, case, message):
    with pytest.raises(SAEFormatError, match=message):
        save_sae(random_sae(**case), tmp_path / "out", format=fmt)
