"""`mechscope datasets build|ls|export-tdb` end to end on a small saved checkpoint and SAE, and the
organism helper that `make serve` calls."""

from __future__ import annotations

import argparse
import json
import time

import pytest
import torch

from mechscope.activation_server.cli.datasets import add_datasets_subcommands
from mechscope.autoencoders import save_sae
from mechscope.datasets.node_dataset import NodeDataset
from mechscope.datasets.node_dataset.organism import ensure_organism_dataset
from mechscope.datasets.node_dataset.config import BuildConfig
from mechscope.datasets.stores import LocalBlobStore
from mechscope.datasets.tdb_datasets import TdbDataset
from mechscope.inference import GPT2, GPT2Config, save_pretrained

from .node_dataset_helpers import random_sae, small_model


@pytest.fixture
def parser():
    p = argparse.ArgumentParser(prog="mechscope")
    add_datasets_subcommands(p.add_subparsers(dest="command", required=True))
    return p


def run(parser, capsys, *argv: str) -> str:
    args = parser.parse_args(["datasets", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_build_ls_and_export_from_the_command_line(parser, capsys, tmp_path):
    torch.set_num_threads(1)
    save_pretrained(small_model(), tmp_path / "model")
    save_sae(random_sae("blocks.1.mlp.hook_post", 256, 32, seed=1), tmp_path / "sae")
    out = tmp_path / "datasets"
    common = ["--model", str(tmp_path / "model"), "--sae", str(tmp_path / "sae"), "--rows", "12", "--n-ctx", "40",
              "--batch-size", "4", "--top-k", "3", "--out", str(out), "--quiet"]
    text = run(parser, capsys, "build", *common)
    assert "node dataset 'model'" in text and "512 mlp_neuron, 8 attn_head, 32 sae_latent; 480 tokens" in text
    ds = NodeDataset(LocalBlobStore(out), "model")
    assert ds.manifest["corpus"] == {"kind": "task_suite", "seed": 0, "first_row": 10_000_000, "rows": 12, "n_ctx": 40}
    assert len(ds.node("sae_latent", 1, 0).top_examples) <= 3
    assert "streamed" not in run(parser, capsys, "build", *common)  # already built: nothing streamed again

    assert "model: model " in run(parser, capsys, "ls", str(out))
    text = run(parser, capsys, "export-tdb", str(out), str(tmp_path / "tdb"), "--prefix", "model", "--quiet")
    assert "sae_latent.blocks.1.mlp.hook_post: sae_latent/blocks.1.mlp.hook_post/collated-activations" in text
    tdb = TdbDataset(LocalBlobStore(tmp_path / "tdb"), "sae_latent/blocks.1.mlp.hook_post/collated-activations")
    assert tdb.list_indices(1) == list(range(32))
    assert json.loads(LocalBlobStore(tmp_path / "tdb").read("mlp_neuron/collated-activations/0/5.json"))[
        "neuron_id"] == {"dataclass_name": "NeuronId", "neuron_index": 5, "layer_index": 0}


def test_ensure_organism_dataset_builds_once(tmp_path):
    torch.set_num_threads(1)
    model = GPT2(GPT2Config(n_layers=1, n_heads=2, d_model=32, n_ctx=128, name="organism"))
    model.init_weights(seed=2)
    config = BuildConfig(top_k=3, batch_size=8, random_samples=4)
    path = ensure_organism_dataset(tmp_path, rows=16, config=config, model=model, progress=False)
    assert path == tmp_path / "organism" and (path / "manifest.json").exists()
    written = (path / "manifest.json").stat().st_mtime_ns
    started = time.perf_counter()
    assert ensure_organism_dataset(tmp_path, rows=16, config=config, model=model, progress=False) == path
    assert (path / "manifest.json").stat().st_mtime_ns == written and time.perf_counter() - started < 2.0
    with torch.no_grad():  # other weights: the stale dataset is rebuilt
        model.h[0].mlp.c_fc.weight.mul_(2)
    ensure_organism_dataset(tmp_path, rows=16, config=config, model=model, progress=False)
    assert (path / "manifest.json").stat().st_mtime_ns != written
    assert NodeDataset(LocalBlobStore(tmp_path), "organism").manifest["model"]["name"] == "organism"
