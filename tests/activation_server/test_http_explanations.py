"""The explanation endpoints on a real uvicorn server: a node's explanations (mechscope's and a TDB
file in the public layout), the node table's batch lookup, search by text, explain-now (offline,
and the LLM against a real OpenAI-compatible server), and errors that name the problem."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from mechscope.datasets.explanations import ExplanationStore, NodeKey, OfflineExplainer, OfflineSimulator, explain_dataset
from mechscope.datasets.stores import LocalBlobStore
from tests.datasets.explanation_helpers import build_small_dataset
from tests.datasets.test_explanations_store import PUBLIC_LINE
from tests.support.http_fixtures import http_engine, make_app  # noqa: F401 (fixture)
from tests.support.live_server import LiveServer
from tests.support.openai_server import OpenAIServer

API = "/api/v1"
SAE = "blocks.1.mlp.hook_post"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    torch.set_num_threads(1)
    ds = build_small_dataset(LocalBlobStore(tmp_path_factory.mktemp("http_expl")))
    nodes = [NodeKey(k, layer, i, hook) for k, layer, i, hook in ds.iter_nodes() if not (k == "mlp_neuron" and layer == 0)]
    explain_dataset(ds, OfflineExplainer(), OfflineSimulator(), nodes=nodes, progress=False)
    ds.store.write(f"{ds.prefix}/explanations/1/7.jsonl", (json.dumps(PUBLIC_LINE) + "\n").encode())
    return ds


@pytest.fixture(scope="module")
def client(http_engine, dataset):  # noqa: F811
    with LiveServer(make_app(http_engine, {"small": dataset})) as server, httpx.Client(base_url=server.url) as c:
        yield c


def test_node_explanations_with_tdb_file_and_baselines(client):
    r = client.get(f"{API}/explanations/mlp_neuron/1/7")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dataset"] == "small" and body["key"] == "mlp_neuron:1:7"
    offline, tdb = body["explanations"]
    assert offline["explainer"] == "offline" and offline["scorer"] == "offline-simulator"
    assert set(offline["baselines"]) == {"random", "empty"}
    assert tdb == {"text": "years in the 1700s", "method": "tdb", "explainer": "tdb", "score": 0.61,
                   "scorer": "tdb", "baselines": {}, "detection": None, "fuzzing": None}
    latent = client.get(f"{API}/explanations/sae_latent/1/4", params={"sae": SAE}).json()
    assert latent["key"] == f"sae_latent:{SAE}:4" and latent["explanations"][0]["score"] is not None


def test_lookup_gives_the_best_explanation_per_node_key(client):
    nodes = [{"kind": "mlp_neuron", "layer": 1, "index": 7}, {"kind": "attn_head", "layer": 0, "index": 2},
             {"kind": "sae_latent", "layer": 1, "index": 4, "sae": SAE}, {"kind": "mlp_neuron", "layer": 0, "index": 9}]
    r = client.post(f"{API}/explanations/lookup", json={"nodes": nodes})
    assert r.status_code == 200, r.text
    found = r.json()["explanations"]
    assert set(found) == {"mlp_neuron:1:7", "attn_head:0:2", f"sae_latent:{SAE}:4"}  # layer 0 neurons: none yet
    scores = [e["score"] for e in client.get(f"{API}/explanations/mlp_neuron/1/7").json()["explanations"]]
    assert found["mlp_neuron:1:7"]["score"] == max(scores)


def test_search_by_explanation_text(client):
    r = client.get(f"{API}/explanations/search", params={"q": "nodes about years", "limit": 200})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert any(h["key"] == "mlp_neuron:1:7" and h["explanation"]["text"] == "years in the 1700s" for h in hits)
    assert all(h["matched"] >= 1 for h in hits)
    heads = client.get(f"{API}/explanations/search", params={"q": "attends", "kind": "attn_head"}).json()["hits"]
    assert heads and all(h["kind"] == "attn_head" and "attends" in h["explanation"]["text"] for h in heads)


def test_explain_now_offline_stores_and_serves(client, dataset):
    assert client.get(f"{API}/explanations/mlp_neuron/0/3").json()["explanations"] == []
    r = client.post(f"{API}/explanations/explain", json={"kind": "mlp_neuron", "layer": 0, "index": 3})
    assert r.status_code == 200, r.text
    [made] = r.json()["explanations"]
    assert made["explainer"] == "offline" and made["score"] is not None
    assert ExplanationStore(dataset.store, dataset.prefix).for_node(NodeKey("mlp_neuron", 0, 3))[0].text == made["text"]
    found = client.post(f"{API}/explanations/lookup", json={"nodes": [{"kind": "mlp_neuron", "layer": 0, "index": 3}]})
    assert found.json()["explanations"]["mlp_neuron:0:3"]["text"] == made["text"]


def test_explain_now_with_the_llm(client, dataset, monkeypatch, tmp_path):
    monkeypatch.delenv("MECHSCOPE_LLM_BASE_URL", raising=False)
    r = client.post(f"{API}/explanations/explain", json={"kind": "attn_head", "layer": 1, "index": 0, "explainer": "llm"})
    assert r.status_code == 409 and "MECHSCOPE_LLM_BASE_URL" in r.json()["detail"]
    with OpenAIServer(api_key="good") as server:
        monkeypatch.setenv("MECHSCOPE_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("MECHSCOPE_LLM_MODEL", "canned")
        monkeypatch.setenv("MECHSCOPE_LLM_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("MECHSCOPE_LLM_API_KEY", "bad")
        before = client.get(f"{API}/explanations/attn_head/1/0").json()
        r = client.post(f"{API}/explanations/explain", json={"kind": "attn_head", "layer": 1, "index": 0,
                                                             "explainer": "llm"})
        assert r.status_code == 502 and "refused the API key" in r.json()["detail"]
        assert client.get(f"{API}/explanations/attn_head/1/0").json() == before
        monkeypatch.setenv("MECHSCOPE_LLM_API_KEY", "good")
        r = client.post(f"{API}/explanations/explain", json={"kind": "attn_head", "layer": 1, "index": 0,
                                                             "explainer": "llm"})
        assert r.status_code == 200, r.text
        assert [e["explainer"] for e in r.json()["explanations"]] == ["llm", "offline"]


@pytest.mark.parametrize("method, path, kwargs, field", [
    ("get", "/explanations/neuron/0/1", {}, "kind"),
    ("get", "/explanations/sae_latent/1/4", {}, "sae"),
    ("get", "/explanations/search", {"params": {"q": ""}}, "q"),
    ("post", "/explanations/lookup", {"json": {"nodes": [{"kind": "mlp_neuron", "index": 1}] * 5001}}, "nodes"),
    ("post", "/explanations/explain", {"json": {"kind": "mlp_neuron", "layer": 0, "index": 1, "explainer": "gpt"}},
     "explainer"),
])
def test_bad_input_is_422_naming_the_field(client, method, path, kwargs, field):
    r = getattr(client, method)(API + path, **kwargs)
    assert r.status_code == 422, r.text
    assert any(field in d["loc"] for d in r.json()["detail"])


def test_unknown_dataset_is_404(client):
    r = client.get(f"{API}/explanations/mlp_neuron/0/1", params={"dataset": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
