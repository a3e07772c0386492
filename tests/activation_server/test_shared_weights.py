"""One copy of the weights per machine: the server's engine and its compute processes run on memory
maps of the same weight files, and answer exactly as an engine that loaded its own copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mechscope.activation_server.engine import Engine
from mechscope.activation_server.engine.loading import EngineSpec, load_engine
from mechscope.activation_server.http.compute_processes import EngineProcesses
from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PromptSpec
from mechscope.activation_server.http.shared_weights import map_safetensors, share_engine_weights
from mechscope.autoencoders import save_sae
from tests.support.http_fixtures import IOI, random_sae

REQUESTS = [AttributionRequest(prompts=[PromptSpec(text=IOI)], mlp=side, top_k=8,
                               loss=LossSpec(targets=[" Mary"], distractors=[" John"])) for side in ("neurons", "latents")]


def _mapped_files(pid: int | str = "self") -> set[str]:
    return {line.split(maxsplit=5)[5].strip() for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if len(line.split(maxsplit=5)) == 6}


@pytest.fixture
def spec(small_checkpoint, tmp_path):
    saes = []
    for i, point in enumerate(("blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out")):
        save_sae(random_sae(point, 64, i), tmp_path / f"sae{i}")
        saes.append(str(tmp_path / f"sae{i}"))
    return EngineSpec(model=str(small_checkpoint[1]), saes=tuple(saes))


def test_map_safetensors_reads_the_file_without_copying(tmp_path):
    from safetensors.torch import save_file
    tensors = {"w": torch.randn(64, 32), "b": torch.randn(7).to(torch.bfloat16), "i": torch.arange(5)}
    save_file(tensors, str(tmp_path / "t.safetensors"))
    mapped = map_safetensors(tmp_path / "t.safetensors")
    assert all(torch.equal(mapped[k], v) for k, v in tensors.items())
    assert str(tmp_path / "t.safetensors") in _mapped_files()


def test_shared_engine_answers_exactly_as_a_loaded_one(spec, tmp_path):
    reference = load_engine(spec, verbose=False).attribute_many_json(REQUESTS)
    engine = load_engine(spec, verbose=False)
    shared = share_engine_weights(engine, tmp_path)
    try:
        assert engine.attribute_many_json(REQUESTS) == reference            # the server, switched to the maps
        assert shared.load_engine().attribute_many_json(REQUESTS) == reference   # a compute process's engine
        mapped = _mapped_files()
        assert str(shared.model_file) in mapped and str(shared.sae_file(1)) in mapped
        assert not any(p.requires_grad for p in engine.model.parameters())
    finally:
        shared.cleanup()
    assert not Path(shared.directory).exists()


def test_compute_processes_map_the_servers_weight_files(spec, tmp_path):
    engine = load_engine(spec, verbose=False)
    reference = engine.attribute_many_json(REQUESTS)
    shared = share_engine_weights(engine, tmp_path)
    processes = EngineProcesses(shared, 2)
    processes.start()
    try:
        assert processes.attribute_json(REQUESTS) == reference
        for pid in processes.worker_pids():
            assert str(shared.model_file) in _mapped_files(pid) and str(shared.sae_file(0)) in _mapped_files(pid)
    finally:
        processes.shutdown()
    assert not Path(shared.directory).exists()      # the files go with the compute processes


def test_bfloat16_engine_shares_its_weights_in_bfloat16(small_checkpoint, tmp_path):
    engine = Engine(load_engine(EngineSpec(model=str(small_checkpoint[1]), dtype="bfloat16"), verbose=False).model)
    shared = share_engine_weights(engine, tmp_path)
    try:
        assert {p.dtype for p in shared.load_model().parameters()} == {torch.bfloat16}
        assert os.path.getsize(shared.model_file) < 2.1 * sum(p.numel() for p in engine.model.parameters())
    finally:
        shared.cleanup()
