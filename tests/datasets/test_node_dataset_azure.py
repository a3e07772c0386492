"""Node datasets on a real Azurite service: push, read a node back, export to TDB's layout, the CLI,
and reads while the service is down."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import torch

from mechscope.activation_server.cli.datasets import add_datasets_subcommands, copy_datasets
from mechscope.datasets.node_dataset import NodeDataset, TdbNodeDataset, export_tdb
from mechscope.datasets.node_dataset.builder import build_node_dataset
from mechscope.datasets.stores import (CONNECTION_STRING_ENV, AzureBlobStore, LocalBlobStore, RetryPolicy,
                                       StoreUnavailableError)
from mechscope.datasets.tdb_datasets import TdbDataset
from tests.support.azurite import Azurite, module_azurite  # noqa: F401 (module_azurite is the `azurite` fixture)

from .node_dataset_helpers import CONFIG, corpus, small_model, small_saes

FAST_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.05)




@pytest.fixture(scope="module")
def local(tmp_path_factory):
    torch.set_num_threads(1)
    store = LocalBlobStore(tmp_path_factory.mktemp("local"))
    build_node_dataset(small_model(), corpus(24), store, "runs/ds", saes=small_saes()[:1], config=CONFIG,
                       progress=False)
    return store


def new_container(azurite: Azurite) -> AzureBlobStore:
    store = AzureBlobStore.from_connection_string(azurite.connection_string, f"c{uuid.uuid4().hex[:16]}",
                                                  retry=FAST_RETRY)
    store.container_client.create_container()
    return store


def same_page(a, b) -> bool:
    return dataclasses.replace(a, source="") == dataclasses.replace(b, source="")


NODES = [("mlp_neuron", 1, 3, None), ("attn_head", 0, 2, None), ("sae_latent", 1, 11, "blocks.1.mlp.hook_post")]


def test_push_then_read_nodes_from_azure(azurite, local):
    remote = new_container(azurite)
    assert copy_datasets(local, remote, progress=False) == ["runs/ds"]
    ours, theirs = NodeDataset(local, "runs/ds"), NodeDataset(remote, "runs/ds")
    theirs.verify()
    for kind, layer, index, hook in NODES:
        assert same_page(ours.node(kind, layer, index, hook_point=hook), theirs.node(kind, layer, index, hook_point=hook))
    assert "Azure container" in theirs.description


def test_cli_push_ls_pull(azurite, local, tmp_path, monkeypatch, capsys):
    import argparse
    parser = argparse.ArgumentParser(prog="mechscope")
    add_datasets_subcommands(parser.add_subparsers(dest="command", required=True))
    remote = new_container(azurite)
    container = remote.container_client.container_name
    monkeypatch.setenv(CONNECTION_STRING_ENV, azurite.connection_string)

    def run(*argv: str) -> str:
        args = parser.parse_args(["datasets", *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    assert "copied node dataset 'runs/ds'" in run("push", str(local.root), f"azure://{container}", "--quiet")
    listing = run("ls", f"azure://{container}")
    assert "runs/ds: model tiny; 512 mlp_neuron, 8 attn_head, 96 sae_latent; 1152 tokens" in listing
    run("pull", f"azure://{container}", str(tmp_path / "back"), "--quiet")
    back = LocalBlobStore(tmp_path / "back")
    assert {k: back.read(k) for k in back.list()} == {k: local.read(k) for k in local.list("runs/ds/")}


def test_export_tdb_to_azure_reads_back_with_tdb_dataset(azurite, local):
    remote = new_container(azurite)
    ours = NodeDataset(local, "runs/ds")
    paths = export_tdb(ours, remote, "tdb")
    assert paths["attn_head.0"] == "tdb/attn_head/collated-activations-by-token-pair"
    assert paths["mlp_neuron.1"] == "tdb/mlp_neuron/collated-activations"
    neurons = TdbDataset(remote, paths["mlp_neuron.1"])
    assert neurons.list_layers() == [0, 1] and neurons.list_indices(1) == list(range(256))
    record = neurons.read_record(1, 3)
    page = ours.node("mlp_neuron", 1, 3)
    assert [r.tokens for r in record.most_positive_activation_records] == [e.tokens for e in page.top_examples]
    assert [r.activations for r in record.most_positive_activation_records] == [e.activations for e in page.top_examples]
    assert record.mean == page.stats.mean and record.kurtosis == page.stats.kurtosis
    assert [len(q) for q in record.random_sample_by_quantile] == [len(q) for q in page.quantile_samples]

    heads = TdbDataset(remote, paths["attn_head.0"])
    assert heads.token_pair
    head_page = ours.node("attn_head", 0, 2)
    via_tdb = TdbNodeDataset(heads, "attn_head").node(0, 2)
    assert [e.token_pair_activations for e in via_tdb.top_examples] == \
        [e.token_pair_activations for e in head_page.top_examples]
    # the adapter's per-token activation is the max of each query row, as the builder defines it
    for theirs, mine in zip(via_tdb.top_examples, head_page.top_examples):
        assert theirs.tokens == mine.tokens
        if mine.start == 0:  # the window holds every key: row maxima are the head's activations
            assert theirs.activations == pytest.approx(mine.activations, abs=1e-6)
        else:  # keys before the window are not in the matrix
            assert all(t <= m + 1e-6 for t, m in zip(theirs.activations, mine.activations))


def test_reading_while_azurite_is_down_raises_then_recovers(azurite, local):
    remote = new_container(azurite)
    copy_datasets(local, remote, progress=False)
    ds = NodeDataset(remote, "runs/ds")
    first = ds.node("mlp_neuron", 0, 1)
    azurite.stop()
    try:
        with pytest.raises(StoreUnavailableError) as info:
            ds.node("mlp_neuron", 0, 2)
        assert remote.description in str(info.value) and info.value.store == remote.description
    finally:
        azurite.start()
    assert ds.node("mlp_neuron", 0, 2).index == 2
    assert same_page(ds.node("mlp_neuron", 0, 1), first)
