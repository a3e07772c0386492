"""Golden answers: requests in, JSON bytes out, recorded from the server as it was before the
restructure (engine/ and http/ subpackages) and replayed against it now. Any change to what the
server answers for the organism (node tables, traces, interventions, sweeps, path patching, graphs,
logit lens, node pages) shows up here byte for byte.

The node-table requests name ``total_effect_ln: "frozen"`` (the default became "live" in issue 23;
they pin the convention they were recorded with rather than being re-recorded).

Re-record only on purpose (an intended change of answers), and say so in the commit:
``MECHSCOPE_RECORD_GOLDEN=1 python -m pytest tests/activation_server/test_golden_answers.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer

GOLDEN = Path(__file__).parent / "golden"
RECORDED_THREADS = 2   # torch threads the answers were recorded with: sums split differently round differently
RECORD = os.environ.get("MECHSCOPE_RECORD_GOLDEN") == "1"

IOI = "When Mary and John went to the store, John gave a drink to"
IOI_S = "When Mary and John went to the store, Mary gave a drink to"
LOSS = {"targets": [" Mary"], "distractors": [" John"]}
HEAD = {"kind": "attn_head", "layer": 2, "index": 1, "position": -1}

CASES: dict[str, tuple[str, str, dict | None]] = {
    "node_table": ("POST", "/api/v1/attribution", {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 20,
                                                     "total_effect_ln": "frozen"}),
    "node_table_latents": ("POST", "/api/v1/attribution",
                           {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 15, "mlp": "latents",
                            "attention": "latents", "total_effect_ln": "frozen"}),
    "node_table_compare": ("POST", "/api/v1/attribution", {"loss": LOSS, "top_k": 10, "total_effect_ln": "frozen", "prompts": [
        {"text": IOI},
        {"text": IOI, "interventions": [{"node": HEAD, "mode": "zero"},
                                        {"node": {"kind": "mlp_neuron", "layer": 1, "index": 3, "position": -1},
                                         "mode": "mean"}]},
        {"text": IOI_S}]}),
    "trace_k": ("POST", "/api/v1/attribution", {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 10,
                                                "trace": {"node": {**HEAD, "key_position": 2}, "through": "k"}}),
    "trace_v": ("POST", "/api/v1/attribution", {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 10,
                                                "trace": {"node": {**HEAD, "key_position": 2}, "through": "v"}}),
    "trace_neuron": ("POST", "/api/v1/attribution",
                     {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 10,
                      "trace": {"node": {"kind": "mlp_neuron", "layer": 2, "index": 5, "position": -1},
                                "through": "pre"}}),
    "sweep_heads": ("POST", "/api/v1/patching/sweep", {"clean": IOI, "corrupted": IOI_S, "loss": LOSS}),
    "sweep_positions": ("POST", "/api/v1/patching/sweep",
                        {"clean": IOI, "corrupted": IOI_S, "loss": LOSS, "kind": "resid_pre"}),
    "path_patching": ("POST", "/api/v1/patching/path",
                      {"clean": IOI, "corrupted": IOI_S, "loss": LOSS,
                       "senders": [[1, 0], [2, 1]], "receivers": [[3, 1]], "receiver_inputs": ["q", "v"]}),
    "graph": ("POST", "/api/v1/graph", {"prompt": IOI, "loss": LOSS}),
    "graph_latents": ("POST", "/api/v1/graph", {"prompt": IOI, "loss": LOSS, "mlp": "latents", "max_nodes": 12,
                                                "max_edges": 30}),
    "logit_lens": ("POST", "/api/v1/logit-lens", {"prompt": IOI, "targets": [" Mary", " John"], "top_k": 5}),
    "page_neuron": ("GET", "/api/v1/nodes/mlp_neuron/1/7", None),
    "page_head": ("GET", "/api/v1/nodes/attn_head/2/1", None),
    "page_latent": ("GET", "/api/v1/nodes/sae_latent/1/3?sae=blocks.1.hook_mlp_out", None),
}


@pytest.fixture(scope="module")
def organism_server(tmp_path_factory):
    from mechscope.activation_server.engine.engine import Engine
    from mechscope.activation_server.http.node_datasets import open_node_dataset
    from mechscope.autoencoders.organism_saes import load_organism_saes
    from mechscope.datasets.node_dataset.organism import ensure_organism_dataset
    from mechscope.datasets.node_dataset.config import BuildConfig
    from mechscope.inference import load_model
    from tests.support.http_fixtures import make_app

    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(RECORDED_THREADS)
    model = load_model("organism")
    saes = list(load_organism_saes())
    config = BuildConfig(top_k=4, window=12, window_after=3, random_samples=3, quantile_bins=2, quantile_samples=2,
                         histogram_bins=8, logit_tokens=4, batch_size=16, seed=3)
    path = ensure_organism_dataset(tmp_path_factory.mktemp("golden_store"), rows=48, saes=saes, config=config,
                                   progress=False, model=model)
    datasets = {"organism": open_node_dataset(str(path))}
    try:
        with LiveServer(make_app(Engine(model, saes), datasets)) as server:
            yield server, str(path).encode()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(CASES))
def test_answer_is_byte_identical_to_the_recorded_one(organism_server, name):
    server, store_path = organism_server
    method, path, body = CASES[name]
    response = httpx.request(method, server.url + path, json=body, timeout=120)
    assert response.status_code == 200, response.text
    content = response.content.replace(store_path, b"<store>")  # node pages name their (temporary) store
    golden = GOLDEN / f"{name}.json"
    if RECORD:
        golden.write_bytes(content)
    assert golden.exists(), f"no golden answer for {name}: record with MECHSCOPE_RECORD_GOLDEN=1"
    expected = golden.read_bytes()
    if content != expected:
        a, b = json.loads(expected), json.loads(content)
        assert a == b, f"{name}: the answer differs from the recorded one"
        pytest.fail(f"{name}: same values, different bytes (key order or number formatting changed)")
