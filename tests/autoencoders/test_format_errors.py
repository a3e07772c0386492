"""Every malformed checkpoint is an SAEFormatError whose message names the problem; no key is dropped."""

from __future__ import annotations

import json
import os
import pickletools
import zipfile

import pytest
import torch

from mechscope.autoencoders import SAEFormatError, load_native_sae, load_openai_sae, load_sae, load_saelens_sae, save_sae
from mechscope.inference.errors import CheckpointError

from .helpers import D_IN, N_LATENTS, random_sae, random_tensors
from .writers import pre6_cfg, v6_cfg, write_openai_pt, write_saelens_dir


# ------------------------------------------------------------------------------ OpenAI
def test_openai_unknown_key(tmp_path):
    path = write_openai_pt(tmp_path / "ae.pt", random_tensors(), extra={"decoder.bias": torch.zeros(D_IN)})
    with pytest.raises(SAEFormatError, match=r"ae\.pt: unknown key\(s\) \['decoder\.bias'\]"):
        load_openai_sae(path)


def test_openai_missing_key(tmp_path):
    path = write_openai_pt(tmp_path / "ae.pt", random_tensors(), drop=("latent_bias",))
    with pytest.raises(SAEFormatError, match=r"missing key\(s\) \['latent_bias'\]"):
        load_openai_sae(path)


def test_openai_shape_mismatch_names_both_shapes(tmp_path):
    tensors = random_tensors()
    path = write_openai_pt(tmp_path / "ae.pt", tensors, extra={"decoder.weight": torch.zeros(D_IN, N_LATENTS + 1)})
    with pytest.raises(SAEFormatError, match=r"'decoder\.weight' has shape \[64, 257\], expected \[64, 256\]"):
        load_openai_sae(path)


def test_openai_statistic_with_wrong_length(tmp_path):
    path = write_openai_pt(tmp_path / "ae.pt", random_tensors(), extra={"latents_mean_square": torch.zeros(3)})
    with pytest.raises(SAEFormatError, match=r"statistic 'latents_mean_square' has shape \[3\], expected \[256\]"):
        load_openai_sae(path)


def test_openai_topk_without_k(tmp_path):
    path = write_openai_pt(tmp_path / "ae.pt", random_tensors(), activation="TopK",
                           extra={"activation_state_dict": {"postact_fn": "ReLU"}})
    with pytest.raises(SAEFormatError, match=r"TopK but activation_state_dict has no 'k'"):
        load_openai_sae(path)


def test_openai_unknown_activation(tmp_path):
    path = write_openai_pt(tmp_path / "ae.pt", random_tensors(), extra={"activation": "GELU"})
    with pytest.raises(SAEFormatError, match=r"unknown activation 'GELU'"):
        load_openai_sae(path)


def test_openai_k_larger_than_latents(tmp_path):
    path = write_openai_pt(tmp_path / "ae.pt", random_tensors(), activation="TopK", k=N_LATENTS + 1)
    with pytest.raises(SAEFormatError, match=r"k=257"):
        load_openai_sae(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "ae.pt"
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(SAEFormatError, match=r"ae\.pt: not a weights-only torch checkpoint"):
        load_openai_sae(path)


class _PlantsAMarker:
    """Unpickling this calls os.system (the attack weights_only must stop)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    tensors = random_tensors()
    path = write_openai_pt(tmp_path / "evil.pt", tensors, extra={"activation": _PlantsAMarker(marker)})
    # The plant is real: the pickle inside the file references os.system.
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    strings = [arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    assert any(s.split()[-1:] == ["system"] and s.split()[0] in ("posix", "os", "nt") for s in strings), strings

    for load in (lambda: load_openai_sae(path), lambda: load_sae(path)):
        with pytest.raises(CheckpointError) as info:
            load()
        assert isinstance(info.value, SAEFormatError)
        assert "evil.pt" in str(info.value) and "weights-only" in str(info.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------ SAELens
def test_saelens_threshold_with_standard_architecture_is_not_dropped(tmp_path):
    """The known failure: a BatchTopK/JumpReLU SAE read as standard with its threshold silently lost."""
    tensors = random_tensors(threshold=True)
    directory = write_saelens_dir(tmp_path / "d", tensors, v6_cfg("standard", D_IN, N_LATENTS))
    with pytest.raises(SAEFormatError, match=r"unknown key\(s\) \['threshold'\].*architecture='standard'; refusing to drop it"):
        load_saelens_sae(directory)


def test_saelens_batchtopk_without_threshold(tmp_path):
    directory = write_saelens_dir(tmp_path / "d", random_tensors(), v6_cfg("batchtopk", D_IN, N_LATENTS, k=8))
    with pytest.raises(SAEFormatError, match=r"missing key\(s\) \['threshold'\].*batchtopk SAE needs its per-latent 'threshold'"):
        load_saelens_sae(directory)


def test_saelens_unknown_architecture(tmp_path):
    directory = write_saelens_dir(tmp_path / "d", random_tensors(), v6_cfg("gated", D_IN, N_LATENTS))
    with pytest.raises(SAEFormatError, match=r"cfg\.json: unsupported architecture 'gated'"):
        load_saelens_sae(directory)


def test_saelens_topk_without_k(tmp_path):
    directory = write_saelens_dir(tmp_path / "d", random_tensors(), v6_cfg("topk", D_IN, N_LATENTS))
    with pytest.raises(SAEFormatError, match=r"topk SAE without 'k'"):
        load_saelens_sae(directory)


def test_saelens_shape_mismatch(tmp_path):
    tensors = random_tensors() | {"W_enc": torch.zeros(D_IN, N_LATENTS * 2)}
    directory = write_saelens_dir(tmp_path / "d", tensors, v6_cfg("standard", D_IN, N_LATENTS))
    with pytest.raises(SAEFormatError, match=r"sae_weights\.safetensors: 'W_enc' has shape \[64, 512\], expected \[64, 256\]"):
        load_saelens_sae(directory)


def test_saelens_unknown_weight_key(tmp_path):
    tensors = random_tensors() | {"W_gate": torch.zeros(D_IN, N_LATENTS)}
    directory = write_saelens_dir(tmp_path / "d", tensors, v6_cfg("standard", D_IN, N_LATENTS))
    with pytest.raises(SAEFormatError, match=r"unknown key\(s\) \['W_gate'\]"):
        load_saelens_sae(directory)


def test_saelens_expected_average_without_factor(tmp_path):
    cfg = v6_cfg("standard", D_IN, N_LATENTS, normalize_activations="expected_average_only_in")
    directory = write_saelens_dir(tmp_path / "d", random_tensors(), cfg)
    with pytest.raises(SAEFormatError, match=r"'expected_average_only_in' but no scaling factor.*norm_scaling_factor="):
        load_saelens_sae(directory)


def test_saelens_unknown_normalisation(tmp_path):
    cfg = v6_cfg("standard", D_IN, N_LATENTS, normalize_activations="rms")
    with pytest.raises(SAEFormatError, match=r"unknown normalize_activations 'rms'"):
        load_saelens_sae(write_saelens_dir(tmp_path / "d", random_tensors(), cfg))


def test_saelens_unapplied_scaling_factor(tmp_path):
    tensors = random_tensors() | {"scaling_factor": torch.full((N_LATENTS,), 2.0)}
    directory = write_saelens_dir(tmp_path / "d", tensors, pre6_cfg(D_IN, N_LATENTS))
    with pytest.raises(SAEFormatError, match=r"'scaling_factor' holds values other than 1.*finetuning_scaling_factor=true"):
        load_saelens_sae(directory)


def test_saelens_bad_json(tmp_path):
    directory = write_saelens_dir(tmp_path / "d", random_tensors(), v6_cfg("standard", D_IN, N_LATENTS))
    (directory / "cfg.json").write_text("{not json")
    with pytest.raises(SAEFormatError, match=r"cfg\.json: not valid JSON"):
        load_saelens_sae(directory)


def test_saelens_per_head_sae_is_refused(tmp_path):
    cfg = pre6_cfg(D_IN, N_LATENTS) | {"hook_point_head_index": 3}
    with pytest.raises(SAEFormatError, match=r"hook_head_index=3"):
        load_saelens_sae(write_saelens_dir(tmp_path / "d", random_tensors(), cfg))


# ------------------------------------------------------------------------------ mechscope format
def test_native_unknown_tensor(tmp_path):
    directory = save_sae(random_sae(), tmp_path / "s")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / "sae.safetensors")) | {"threshold": torch.zeros(N_LATENTS)}
    save_file(tensors, str(directory / "sae.safetensors"))
    with pytest.raises(SAEFormatError, match=r"sae\.safetensors: unknown key\(s\) \['threshold'\]"):
        load_native_sae(directory)


def test_native_format_version_and_config_errors(tmp_path):
    directory = save_sae(random_sae(), tmp_path / "s")
    meta = json.loads((directory / "sae.json").read_text())
    (directory / "sae.json").write_text(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(SAEFormatError, match=r"format_version 99 is not supported"):
        load_native_sae(directory)
    meta["config"]["activation"] = "topk"  # k missing
    (directory / "sae.json").write_text(json.dumps(meta))
    with pytest.raises(SAEFormatError, match=r"sae\.json: invalid config: .*k=None"):
        load_native_sae(directory)


# ------------------------------------------------------------------------------ detection
def test_local_detection_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEFormatError, match=r"neither sae\.json \(mechscope\) nor cfg\.json \(SAELens\)"):
        load_sae(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SAEFormatError, match=r"notes\.txt: not a recognised SAE file"):
        load_sae(tmp_path / "notes.txt")
    with pytest.raises(SAEFormatError, match=r"missing-dir: no such file or directory"):
        load_sae(tmp_path / "missing-dir")


def test_detection_by_content_accepts_inner_files(tmp_path):
    sae = random_sae()
    save_sae(sae, tmp_path / "own")
    save_sae(sae, tmp_path / "sl", format="saelens")
    save_sae(sae, tmp_path / "weights.bin", format="openai")  # no .pt suffix: detected by content
    x = torch.randn(3, D_IN)
    with torch.no_grad():
        expected = sae.encode(x)
        for target in (tmp_path / "own" / "sae.json", tmp_path / "sl" / "cfg.json", tmp_path / "weights.bin", str(tmp_path / "own")):
            assert torch.equal(load_sae(target).encode(x), expected)
