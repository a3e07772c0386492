"""SAE names and the model-compatibility check."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mechscope.autoencoders import (
    LocalSAESpec,
    OpenAISAESpec,
    SAEConfig,
    SAEIncompatibleError,
    SAELensHubSpec,
    check_compatible,
    parse_sae_spec,
)
from mechscope.inference.errors import InvalidInputError

from .helpers import random_sae

GPT2_SMALL = SimpleNamespace(d_model=768, d_mlp=None, n_layers=12)


def test_openai_names():
    spec = parse_sae_spec("openai:gpt2-small/resid_delta_mlp_v5_32k/3")
    assert spec == OpenAISAESpec("gpt2-small", "resid_delta_mlp", "_v5_32k", 3)
    assert spec.blob_name == "gpt2-small/resid_delta_mlp_v5_32k/autoencoders/3.pt"
    assert spec.hook_point == "blocks.3.hook_mlp_out"
    v1 = parse_sae_spec("openai:gpt2-small/mlp_post_act/autoencoders/11.pt")
    assert (v1.version, v1.hook_point, str(v1)) == ("", "blocks.11.mlp.hook_post", "openai:gpt2-small/mlp_post_act/11")
    assert parse_sae_spec("openai:gpt2-small/resid_delta_attn_v4/0").hook_point == "blocks.0.hook_attn_out"
    assert parse_sae_spec("openai:gpt2-small/resid_post_attn_v5_128k/5").hook_point == "blocks.5.hook_resid_mid"


@pytest.mark.parametrize("name,message", [
    ("openai:gpt2-small/resid_post_mlp/3", r"release v1 has no location 'resid_post_mlp'.*\['mlp_post_act', 'resid_delta_mlp'\]"),
    ("openai:gpt2-small/mlp_post_act_v5_32k/3", r"release v5_32k has no location 'mlp_post_act'"),
    ("openai:gpt2-small/resid_delta_mlp_v5_32k/12", r"bad layer '12'.*layers 0\.\.11"),
    ("openai:gpt2-xl/resid_delta_mlp_v5_32k/1", r"unknown OpenAI SAE model 'gpt2-xl'"),
    ("openai:gpt2-small/resid_delta_mlp_v5_32k", r"expected 'openai:<model>/<location><version>/<layer>'"),
    ("saelens:jbloom", r"expected 'saelens:<owner>/<repo>\[@revision\]/<folder>'"),
    ("saelens:jbloom/repo@/x", r"empty revision"),
    ("saelens:jbloom/repo/../x", r"bad folder"),
    ("hf:jbloom/x/y", r"unknown SAE source 'hf'"),
    ("", r"non-empty string"),
])
def test_bad_names(name, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_sae_spec(name)


def test_saelens_and_local_names(tmp_path):
    assert parse_sae_spec("saelens:jbloom/GPT2-Small-SAEs-Reformatted/blocks.3.hook_resid_pre") == SAELensHubSpec(
        "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.3.hook_resid_pre", "main"
    )
    assert parse_sae_spec("saelens:org/repo@v1.0/a/b") == SAELensHubSpec("org/repo", "a/b", "v1.0")
    assert parse_sae_spec("saelens:org/repo") == SAELensHubSpec("org/repo", "", "main")
    assert parse_sae_spec("file:/x/y") == LocalSAESpec(Path("/x/y"))
    assert parse_sae_spec("relative/dir") == LocalSAESpec(Path("relative/dir"))
    assert parse_sae_spec(tmp_path) == LocalSAESpec(tmp_path)


# ------------------------------------------------------------------------------ compatibility
def _config(hook, d_in=768, center=False, fold_ln=False):
    return SAEConfig(d_in=d_in, n_latents=16, hook_point=hook,
                     expected_weight_processing={"center_writing_weights": center, "fold_ln": fold_ln})


def test_compatible_cases_pass():
    check_compatible(_config("blocks.3.hook_mlp_out"), GPT2_SMALL, {"center_writing_weights": False})
    check_compatible(_config("blocks.0.mlp.hook_post", d_in=3072), GPT2_SMALL)
    check_compatible(_config("blocks.11.hook_resid_post", center=True), GPT2_SMALL, {"center_writing_weights": True})
    # MLP activations do not depend on centring (LayerNorm removes the mean): no complaint
    check_compatible(_config("blocks.2.mlp.hook_pre", d_in=3072, center=True), GPT2_SMALL)
    custom = SimpleNamespace(d_model=64, d_mlp=100, n_layers=2)
    check_compatible(random_sae(d_in=100, n_latents=8, hook_point="blocks.1.mlp.hook_post"), custom)


@pytest.mark.parametrize("config,model_wp,message", [
    (_config("blocks.3.hook_resid_pre", d_in=512), None,
     r"d_in=512 does not match the width 768 of hook point 'blocks\.3\.hook_resid_pre'"),
    (_config("blocks.3.mlp.hook_post", d_in=768), None, r"d_in=768 does not match the width 3072"),
    (_config("blocks.12.hook_resid_pre"), None, r"layer 12, but the model has only 12 layers \(0\.\.11\)"),
    (_config("blocks.3.hook_resid_pre", center=True), {"center_writing_weights": False},
     r"trained on a model with centred writing weights \(center_writing_weights=True\).*center_writing_weights=False"),
    (_config("blocks.3.hook_attn_out", center=False), {"center_writing_weights": True},
     r"without centred writing weights.*center_writing_weights=True"),
    (_config("ln_final.hook_normalized", fold_ln=True), {"fold_ln": False}, r"folded LayerNorm weights \(fold_ln=True\)"),
    (_config("blocks.3.hook_q"), None, r"unknown hook point 'blocks\.3\.hook_q'"),
    (SAEConfig(d_in=768, n_latents=4), None, r"records no hook point"),
    (_config("blocks.3.hook_resid_pre"), {"centre": True}, r"unknown weight-processing option\(s\) \['centre'\]"),
])
def test_incompatible_cases_name_the_problem(config, model_wp, message):
    with pytest.raises(SAEIncompatibleError, match=message):
        check_compatible(config, GPT2_SMALL, model_wp)
