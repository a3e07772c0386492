"""The LLM path end to end against a real OpenAI-compatible HTTP server on 127.0.0.1
(tests/support/openai_server.py): well-formed requests, retries on 429/5xx, cache hits on a rerun,
and clear typed errors that leave stored explanations untouched."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from mechscope.activation_server.cli import main
from mechscope.datasets.explanations import (ChatClient, ExplanationStore, LlmAuthError, LlmConfig, LlmExplainer,
                                             LlmNotConfiguredError, LlmSimulator, LlmUnavailableError, NodeKey,
                                             OfflineExplainer, OfflineSimulator, explain_dataset)
from mechscope.datasets.stores import LocalBlobStore
from tests.support.openai_server import EXPLANATION, OpenAIServer

from .explanation_helpers import build_small_dataset

NODES = [NodeKey("mlp_neuron", 1, 3), NodeKey("attn_head", 0, 1), NodeKey("sae_latent", 1, 4, "blocks.1.mlp.hook_post")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    torch.set_num_threads(1)
    return build_small_dataset(LocalBlobStore(tmp_path_factory.mktemp("llm")))


def client(server: OpenAIServer, cache, key: str | None = "test-key", **kw) -> ChatClient:  # type: ignore[no-untyped-def]
    return ChatClient(server.base_url, "canned-model", key, cache_dir=cache, backoff_s=0.01, **kw)


def test_llm_explains_and_scores_with_well_formed_requests_and_caches(dataset, tmp_path):
    with OpenAIServer() as server:
        c = client(server, tmp_path / "cache")
        report = explain_dataset(dataset, LlmExplainer(c), LlmSimulator(c), nodes=NODES, progress=False, workers=3)
        assert report.nodes_done == 3
        first = server.completions
        # per node: its explanation, a random other node's (its group has no other yet), and the simulations
        # of its own and the empty explanation (the other node's text equals its own: a cache hit)
        store = ExplanationStore(dataset.store, dataset.prefix)
        fuzzed = [store.for_node(n)[0].details.get("fuzzing") for n in NODES]
        assert all(f is None or 0 <= f <= 1 for f in fuzzed) and any(f is not None for f in fuzzed)
        assert first == 3 * 4 + sum(f is not None for f in fuzzed)  # plus one fuzzing call per node with top windows
        fuzz_prompts = [b for b in server.requests if "marked" in b["messages"][0]["content"]]
        assert fuzz_prompts and all("<<" in b["messages"][1]["content"] for b in fuzz_prompts)
        requests, hits = c.stats["requests"], c.stats["cache_hits"]
        for body, headers in zip(server.requests, server.headers):
            assert body["model"] == "canned-model" and body["temperature"] == 0.0 and body["max_tokens"] > 0
            assert [m["role"] for m in body["messages"]] == ["system", "user"]
            assert headers["Authorization"] == "Bearer test-key"
        explain_prompts = [b for b in server.requests if "JSON list" not in b["messages"][0]["content"]]
        assert all(b["messages"][1]["content"].endswith("the main thing this neuron does is find")
                   for b in explain_prompts)
        assert any("\t10\n" in b["messages"][1]["content"] for b in explain_prompts)  # activations scaled 0-10
        e = store.for_node(NODES[0])[0]
        assert e.explainer == "llm" and e.method == "llm/canned-model" and e.scorer == "llm-simulator"
        assert e.text == EXPLANATION and e.score is not None and e.baselines["empty"] == 0.0
        again = explain_dataset(dataset, LlmExplainer(c), LlmSimulator(c), nodes=NODES, progress=False)
        assert again.nodes_done == 3 and server.completions == first  # every call answered from the cache
        assert c.stats["requests"] == requests and c.stats["cache_hits"] == hits + first + 3


def test_retries_on_429_and_5xx_then_succeeds(tmp_path):
    with OpenAIServer(fail_first=[429, 500, 503]) as server:
        c = client(server, None)
        answer = c.chat([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
        assert answer == EXPLANATION + "."
        assert server.statuses == [429, 500, 503, 200] and c.stats["retries"] == 3


def test_retries_run_out_into_a_typed_error(tmp_path):
    with OpenAIServer(fail_first=[500] * 10) as server:
        c = client(server, None, max_retries=2)
        with pytest.raises(LlmUnavailableError, match=r"failed 3 times; last: HTTP 500"):
            c.chat([{"role": "user", "content": "y"}])
        assert server.statuses == [500, 500, 500]


def _blobs(dataset) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {k: dataset.store.read(k) for k in dataset.store.list(f"{dataset.prefix}/explanations/")}


def test_bad_key_and_unreachable_endpoint_leave_explanations_untouched(dataset, tmp_path):
    explain_dataset(dataset, OfflineExplainer(), OfflineSimulator(), nodes=NODES, progress=False)
    before = _blobs(dataset)
    with OpenAIServer(api_key="right") as server:
        c = client(server, tmp_path / "c1", key="wrong")
        with pytest.raises(LlmAuthError, match=r"refused the API key \(HTTP 401"):
            explain_dataset(dataset, LlmExplainer(c), LlmSimulator(c), nodes=NODES, progress=False)
        assert server.statuses == [401] * len(server.statuses) and len(server.statuses) >= 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    c = ChatClient(f"http://127.0.0.1:{port}/v1", "m", "k", backoff_s=0.01, max_retries=1)
    with pytest.raises(LlmUnavailableError, match=f"127.0.0.1:{port}.*ConnectError"):
        explain_dataset(dataset, LlmExplainer(c), LlmSimulator(c), nodes=NODES, progress=False)
    assert _blobs(dataset) == before


def test_configuration_from_environment():
    with pytest.raises(LlmNotConfiguredError, match="MECHSCOPE_LLM_BASE_URL"):
        LlmConfig.from_env({})
    cfg = LlmConfig.from_env({"MECHSCOPE_LLM_BASE_URL": "http://x/v1", "MECHSCOPE_LLM_MODEL": "m",
                              "OPENAI_API_KEY": "k", "MECHSCOPE_LLM_CONCURRENCY": "2", "MECHSCOPE_LLM_CACHE": "/tmp/c"})
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.concurrency, cfg.cache_dir) == ("http://x/v1", "m", "k", 2, "/tmp/c")


def test_cli_llm_explainer(dataset, tmp_path, monkeypatch, capsys):
    with OpenAIServer(api_key="cli-key") as server:
        monkeypatch.setenv("MECHSCOPE_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("MECHSCOPE_LLM_MODEL", "cli-model")
        monkeypatch.setenv("MECHSCOPE_LLM_API_KEY", "cli-key")
        monkeypatch.setenv("MECHSCOPE_LLM_CACHE", str(tmp_path / "cache"))
        root = str(dataset.store.root)
        assert main(["explain", "--dataset", root, "--prefix", "ds", "--explainer", "llm", "--quiet",
                     "--nodes", "mlp_neuron:0:2", "sae_latent:blocks.0.hook_resid_post:1"]) == 0
        assert "llm: explained 2 nodes" in capsys.readouterr().out
        monkeypatch.setenv("MECHSCOPE_LLM_API_KEY", "nope")
        monkeypatch.setenv("MECHSCOPE_LLM_CACHE", str(tmp_path / "cache2"))
        assert main(["explain", "--dataset", root, "--prefix", "ds", "--explainer", "llm", "--quiet",
                     "--nodes", "mlp_neuron:0:2"]) == 2
        assert "refused the API key" in capsys.readouterr().err
    store = ExplanationStore(dataset.store, "ds")
    assert json.loads(dataset.store.read(store.group_key("llm", "mlp_neuron.0")))["nodes"]["2"]["method"] == \
        "llm/cli-model"


def test_fuzzing_marks_the_activating_tokens_or_as_many_others():
    from mechscope.datasets.explanations.llm import LlmFuzzingScorer
    from mechscope.datasets.node_dataset.records import ExampleWindow
    w = ExampleWindow(tokens=["a", "b", "c", "d", "e"], activations=[0.0, 5.0, 1.0, 4.0, 0.0], max_activation=5.0)
    scorer = LlmFuzzingScorer(client=None, seed=3)  # type: ignore[arg-type]
    cases = scorer.cases([w], key="k")
    assert cases[0] == ("a<<b>>c<<d>>e", True)  # activations >= half the window's max
    fake, label = cases[1]
    assert label is False and fake.count("<<") == 2 and "<<b>>" not in fake and "<<d>>" not in fake
    assert scorer.cases([w], key="k") == cases  # deterministic across runs (the cache depends on it)
