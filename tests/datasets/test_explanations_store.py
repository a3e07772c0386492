"""Explanations of a real (small) node dataset: every node explained and scored, stored beside the
dataset (resumable), TDB's public explanation layout read back, export round-trips; on Azure too."""

from __future__ import annotations

import json
import uuid

import pytest
import torch

from mechscope.datasets.explanations import (ExplanationStore, NodeKey, OfflineExplainer, OfflineSimulator,
                                             explain_dataset, export_tdb_explanations)
from mechscope.datasets.explanations.tdb_format import parse_line_file
from mechscope.datasets.stores import LocalBlobStore
from mechscope.inference.errors import InvalidInputError

from .explanation_helpers import build_small_dataset


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    torch.set_num_threads(1)
    store = LocalBlobStore(tmp_path_factory.mktemp("expl"))
    dataset = build_small_dataset(store)
    report = explain_dataset(dataset, OfflineExplainer(), OfflineSimulator(), progress=False)
    return dataset, report


def all_nodes(dataset) -> list[NodeKey]:  # type: ignore[no-untyped-def]
    return [NodeKey(k, layer, i, hook) for k, layer, i, hook in dataset.iter_nodes()]


def test_every_node_has_a_scored_explanation_with_baselines(explained):
    dataset, report = explained
    nodes = all_nodes(dataset)
    assert report.nodes_done == len(nodes) == 2 * (256 + 4) + 96 + 48
    stored = dict(ExplanationStore(dataset.store, dataset.prefix).iter_ours())
    assert set(stored) == set(nodes)
    for node, e in stored.items():
        assert e.explainer == "offline" and e.scorer == "offline-simulator" and e.method.startswith("offline/")
        assert e.score is not None and -1 <= e.score <= 1
        assert e.baselines["empty"] == 0.0 and e.baselines["random"] is not None
        assert e.details["held_out_tokens"] > 0
    assert {n.kind for n in stored} == {"mlp_neuron", "attn_head", "sae_latent"}


def test_rerun_resumes_without_rewriting(explained):
    dataset, _ = explained
    store = ExplanationStore(dataset.store, dataset.prefix)
    before = {k: dataset.store.read(k) for k in dataset.store.list(f"{dataset.prefix}/explanations/")}
    again = explain_dataset(dataset, OfflineExplainer(), OfflineSimulator(), progress=False)
    assert again.nodes_done == 0 and again.nodes_skipped == len(all_nodes(dataset))
    assert {k: dataset.store.read(k) for k in dataset.store.list(f"{dataset.prefix}/explanations/")} == before
    one = NodeKey("mlp_neuron", 1, 5)
    redo = explain_dataset(dataset, OfflineExplainer(), OfflineSimulator(), nodes=[one], progress=False, store=store)
    assert redo.nodes_done == 1
    assert store.for_node(one)[0].text == json.loads(before[store.group_key("offline", "mlp_neuron.1")])[
        "nodes"]["5"]["text"]  # deterministic


def test_unknown_nodes_are_named_errors(explained):
    dataset, _ = explained
    with pytest.raises(InvalidInputError, match="no node 999"):
        explain_dataset(dataset, OfflineExplainer(), OfflineSimulator(), nodes=[NodeKey("mlp_neuron", 0, 999)],
                        progress=False)
    with pytest.raises(InvalidInputError, match="kind:layer:index"):
        NodeKey.parse("mlp_neuron:zero")


PUBLIC_LINE = {
    "dataclass_name": "NeuronSimulationResults",
    "neuron_id": {"dataclass_name": "NeuronId", "layer_index": 1, "neuron_index": 7},
    "scored_explanations": [{
        "dataclass_name": "ScoredExplanation",
        "explanation": "years in the 1700s",
        "scored_simulation": {
            "dataclass_name": "ScoredSimulation",
            "scored_sequence_simulations": [{
                "dataclass_name": "ScoredSequenceSimulation",
                "sequence_simulation": {"dataclass_name": "SequenceSimulation", "tokens": [" in", " 17"],
                                        "expected_activations": [0.0, 9.5],
                                        "activation_scale": "simulated_normalized_activations",
                                        "distribution_values": [[0, 1], [9, 10]],
                                        "distribution_probabilities": [[0.9, 0.1], [0.5, 0.5]],
                                        "uncalibrated_simulation": None},
                "true_activations": [0.0, 3.2], "ev_correlation_score": 1.0, "rsquared_score": 0.8,
                "absolute_dev_explained_score": 0.7}],
            "ev_correlation_score": 0.61, "rsquared_score": 0.32, "absolute_dev_explained_score": 0.21}}]}


def test_tdb_public_layout_is_read_beside_the_dataset(explained):
    dataset, _ = explained
    store = ExplanationStore(dataset.store, dataset.prefix)
    dataset.store.write(f"{dataset.prefix}/explanations/1/7.jsonl", (json.dumps(PUBLIC_LINE) + "\n").encode())
    found = store.for_node(NodeKey("mlp_neuron", 1, 7))
    assert [e.explainer for e in found] == ["offline", "tdb"]
    tdb = found[1]
    assert tdb.text == "years in the 1700s" and tdb.score == 0.61 and tdb.scorer == "tdb"
    assert tdb.details["rsquared_score"] == 0.32 and tdb.details["scored_sequences"] == 1
    assert (NodeKey("mlp_neuron", 1, 7), tdb) in list(store.iter_tdb())


def test_export_round_trips_in_the_public_layout(explained, tmp_path):
    dataset, _ = explained
    source = ExplanationStore(dataset.store, dataset.prefix)
    dst = LocalBlobStore(tmp_path / "tdb")
    n = export_tdb_explanations(source, dst, "out")
    assert n == len(all_nodes(dataset))
    line = json.loads(dst.read("out/sae_latent/blocks.1.mlp.hook_post/explanations/1/3.jsonl"))
    assert line["dataclass_name"] == "NeuronSimulationResults"
    assert line["neuron_id"] == {"dataclass_name": "NeuronId", "layer_index": 1, "neuron_index": 3}
    sim = line["scored_explanations"][0]["scored_simulation"]
    assert sim["dataclass_name"] == "ScoredSimulation" and set(sim) >= {
        "scored_sequence_simulations", "ev_correlation_score", "rsquared_score", "absolute_dev_explained_score"}
    back = ExplanationStore(dst, "out")
    ours = {k: e for k, e in source.iter_ours()}
    read = dict(back.iter_tdb())
    assert set(read) == set(ours)
    for node, e in ours.items():
        assert read[node].to_json() == e.to_json()
    layer, index, plain = parse_line_file(
        (json.dumps(json.loads(dst.read("out/attn_head/explanations/0/2.jsonl"))) + "\n").encode(), source="x")
    assert (layer, index, plain[0].text) == (0, 2, ours[NodeKey("attn_head", 0, 2)].text)


def test_explanations_on_azure(tmp_path):
    pytest.importorskip("azure.storage.blob")
    from tests.support.azurite import Azurite, AzuriteNotFoundError
    from mechscope.datasets.node_dataset import NodeDataset
    from mechscope.datasets.stores import AzureBlobStore
    from mechscope.activation_server.cli.datasets import copy_datasets
    torch.set_num_threads(1)
    local = LocalBlobStore(tmp_path / "local")
    build_small_dataset(local)
    try:
        azurite = Azurite()
        azurite.__enter__()
    except AzuriteNotFoundError as error:
        pytest.fail(str(error))
    try:
        remote = AzureBlobStore.from_connection_string(azurite.connection_string, f"c{uuid.uuid4().hex[:16]}")
        remote.container_client.create_container()
        copy_datasets(local, remote, progress=False)
        dataset = NodeDataset(remote, "ds")
        nodes = [NodeKey("mlp_neuron", 0, 1), NodeKey("sae_latent", 0, 2, "blocks.0.hook_resid_post")]
        explain_dataset(dataset, OfflineExplainer(), OfflineSimulator(), nodes=nodes, progress=False)
        store = ExplanationStore(remote, "ds")
        assert [str(n) for n, _ in sorted(store.iter_ours(), key=lambda kv: str(kv[0]))] == sorted(map(str, nodes))
        assert store.for_node(nodes[1])[0].score is not None
    finally:
        azurite.__exit__(None, None, None)
