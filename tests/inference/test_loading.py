import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from mechscope.inference import CheckpointError, DownloadError, load_model, save_pretrained
from tests.support.hub_server import HubServer


def _copy_checkpoint(src, dst, transform=None, legacy=False):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    state = {k.removeprefix("transformer."): v for k, v in load_file(str(src / "model.safetensors")).items()}
    state = transform(state) if transform else state
    if legacy:
        torch.save(state, dst / "pytorch_model.bin")
    else:
        save_file(state, str(dst / "model.safetensors"))
    return dst


def _same_logits(a, b):
    tokens = torch.arange(100, 116)[None]
    with torch.no_grad():
        return (a(tokens) - b(tokens)).abs().max().item() <= 1e-6


def test_prefixed_and_buffer_keys_are_accepted(small_checkpoint, small_model, tmp_path):
    _, src = small_checkpoint

    def hf_style(state):
        out = {f"transformer.{k}": v for k, v in state.items()}
        out["transformer.h.0.attn.bias"] = torch.ones(1, 1, 64, 64)  # causal-mask buffer of old checkpoints
        out["lm_head.weight"] = state["wte.weight"].clone()
        return out

    model = load_model(_copy_checkpoint(src, tmp_path / "prefixed", hf_style))
    assert _same_logits(model, small_model)


def test_legacy_pickle_checkpoint_loads_with_weights_only(small_checkpoint, small_model, tmp_path):
    _, src = small_checkpoint
    model = load_model(_copy_checkpoint(src, tmp_path / "legacy", legacy=True))
    assert _same_logits(model, small_model)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/mechscope_pickle_payload_ran"


def test_pickle_with_code_is_refused_and_never_runs(small_checkpoint, tmp_path):
    _, src = small_checkpoint
    if os.path.exists(MARKER):
        os.remove(MARKER)
    d = tmp_path / "evil"
    d.mkdir()
    (d / "config.json").write_text((src / "config.json").read_text())
    torch.save({"wte.weight": _Payload()}, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_model(d)
    assert not os.path.exists(MARKER)


def test_unknown_and_missing_keys_are_named(small_checkpoint, tmp_path):
    _, src = small_checkpoint

    def broken(state):
        state = dict(state)
        state.pop("h.1.mlp.c_fc.bias")
        state["h.1.mlp.extra"] = torch.zeros(3)
        return state

    with pytest.raises(CheckpointError, match=r"unknown keys \['h.1.mlp.extra'\].*missing keys \['h.1.mlp.c_fc.bias'\]"):
        load_model(_copy_checkpoint(src, tmp_path / "broken", broken))


def test_shape_mismatch_and_bad_config_are_named(small_checkpoint, tmp_path):
    _, src = small_checkpoint
    d = _copy_checkpoint(src, tmp_path / "shape", lambda s: {**s, "wpe.weight": torch.zeros(32, 64)})
    with pytest.raises(CheckpointError, match=r"wpe.weight: \(32, 64\) \(expected \(64, 64\)\)"):
        load_model(d)
    cfg = json.loads((src / "config.json").read_text())
    cfg["activation_function"] = "swish"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="swish"):
        load_model(d)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)


def test_save_pretrained_round_trips_through_transformers(small_model, tmp_path):
    from transformers import GPT2LMHeadModel
    out = save_pretrained(small_model, tmp_path / "saved")
    ours = load_model(out)
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    tokens = torch.arange(200, 220)[None]
    with torch.no_grad():
        assert (ours(tokens) - hf(tokens).logits).abs().max().item() <= 1e-4
    assert _same_logits(ours, small_model)


def test_hub_download_path(small_checkpoint, small_model, tmp_path):
    _, src = small_checkpoint
    files = {name: (src / name).read_bytes() for name in ("config.json", "model.safetensors")}
    with HubServer({"someone/tiny-gpt2": files}) as hub:
        model = load_model("someone/tiny-gpt2", endpoint=hub.url, cache_dir=tmp_path, progress=False)
        assert _same_logits(model, small_model)
        requests = len(hub.requests)
        load_model("someone/tiny-gpt2", endpoint=hub.url, cache_dir=tmp_path, progress=False)
        assert len(hub.requests) == requests  # served from the cache


def test_offline_hub_error_names_repo_and_suggests_a_directory(tmp_path):
    with pytest.raises(DownloadError) as info:
        load_model("gpt2", endpoint="http://127.0.0.1:9", cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert "openai-community/gpt2" in message and "local directory" in message
