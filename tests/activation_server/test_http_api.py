"""Every endpoint over a real uvicorn server, through the typed client: results equal the engine's
own Python calls (the HTTP layer adds nothing), and the HTTP-only computations match transformers."""

from __future__ import annotations

import math

import pytest
import torch

from mechscope.activation_server.server_schemas import GenerateRequest, NodeActivationsRequest
from mechscope.activation_server.client import ApiError, Client
from mechscope.activation_server.engine.graph import attribution_graph
from mechscope.activation_server.engine.lens import logit_lens, write_tokens
from mechscope.activation_server.engine.patching import path_patching, patching_sweep
from mechscope.activation_server.schemas import (AttributionRequest, GraphRequest, LogitLensRequest, NodeRef,
                                                 PatchingSweepRequest, PathPatchingRequest)
from tests.support.http_fixtures import (IOI, IOI_CORRUPTED, LOSS, N_LATENTS, PAGES, SAE_POINTS, http_engine,  # noqa: F401
                                         live, node_datasets)


@pytest.fixture(scope="module")
def client(live):
    with Client(live.url) as c:
        yield c


def test_health_and_metadata(client, http_engine):
    assert client.healthz().status == "ok"
    assert client.readyz().status == "ok"
    info = client.info()
    cfg = http_engine.model.cfg
    assert (info.model.n_layer, info.model.n_head, info.model.d_model, info.model.n_ctx) == (3, 4, 64, 64)
    assert info.model.d_mlp == cfg.d_mlp == 256
    assert [s.hook_point for s in info.saes] == sorted(SAE_POINTS)
    assert [s.layer for s in info.saes] == [1, 2] and all(s.n_latents == N_LATENTS for s in info.saes)
    assert info.limits.max_prompt_tokens == 64 and not info.auth_required
    assert client.saes() == info.saes
    (dataset,) = client.datasets()
    assert dataset.name == "toy" and dataset.manifest == {"format": "json-pages", "model": "small"}


def test_tokenize_round_trip(client):
    result = client.tokenize("Hello world", prepend_bos=True)
    assert result.ids == [50256, 15496, 995]  # GPT-2's ids
    assert result.tokens == ["<|endoftext|>", "Hello", " world"]
    back = client.detokenize([15496, 995])
    assert back.text == "Hello world" and back.tokens == ["Hello", " world"]


def test_attribution_equals_engine(client, http_engine):
    request = AttributionRequest.model_validate({
        "prompts": [{"text": IOI, "interventions": [{"node": {"kind": "mlp_neuron", "layer": 1, "index": 7,
                                                              "position": -1}, "mode": "zero"}]},
                    {"text": IOI_CORRUPTED}],
        "loss": LOSS, "mlp": "latents", "attention": "latents", "top_k": 7})
    assert client.attribute(request) == http_engine.attribute(request)


def test_patching_graph_and_lens_equal_engine(client, http_engine):
    model = http_engine.model
    sweep = PatchingSweepRequest(clean=IOI, corrupted=IOI_CORRUPTED, loss=LOSS, kind="heads")
    assert client.patching_sweep(sweep) == patching_sweep(model, sweep)
    path = PathPatchingRequest(clean=IOI, corrupted=IOI_CORRUPTED, loss=LOSS, senders=[(0, 1)], receivers=[(2, 3)])
    assert client.path_patching(path) == path_patching(model, path)
    graph = GraphRequest(prompt=IOI, loss=LOSS, max_nodes=6, max_edges=8)
    assert client.graph(graph) == attribution_graph(http_engine, graph)
    lens = LogitLensRequest(prompt=IOI, targets=[" Mary"], top_k=3)
    assert client.logit_lens(lens) == logit_lens(model, lens)
    node = NodeRef(kind="sae_latent", layer=1, index=4, position=0, sae=SAE_POINTS[0])
    assert client.write_tokens(node, k=4) == write_tokens(model, http_engine.saes, node, 4)


def test_nan_comes_back_as_nan(client):
    """Identical clean and corrupted prompts: the restored fraction is 0/0 (JSON null on the wire)."""
    result = client.path_patching(PathPatchingRequest(clean=IOI, corrupted=IOI, loss=LOSS, senders=[(0, 0)]))
    assert result.restored_fraction is None and result.clean_loss == result.corrupted_loss


def _hf_mlp_acts(hf, layer: int, ids: list[int]) -> torch.Tensor:
    store = {}
    handle = hf.transformer.h[layer].mlp.act.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        with torch.no_grad():
            hf(torch.tensor([ids]))
    finally:
        handle.remove()
    return store["a"][0]


def test_node_activations_match_transformers(client, small_checkpoint):
    hf = small_checkpoint[0]
    result = client.node_activations(NodeActivationsRequest.model_validate(
        {"component": {"kind": "mlp_neuron", "layer": 2, "index": 11}, "prompts": ["a b c", IOI]}))
    for p in result.prompts:
        expected = _hf_mlp_acts(hf, 2, p.token_ids)[:, 11]
        torch.testing.assert_close(torch.tensor(p.values), expected, atol=1e-5, rtol=1e-4)
    assert result.max_value == max(max(p.values) for p in result.prompts)

    heads = client.node_activations(NodeActivationsRequest.model_validate(
        {"component": {"kind": "attn_head", "layer": 1, "index": 2}, "prompts": [IOI], "head_value": "attention_prob"}))
    (p,) = heads.prompts
    hf.set_attn_implementation("eager")
    with torch.no_grad():
        attn = hf(torch.tensor([p.token_ids]), output_attentions=True).attentions[1][0, 2]
    for q, row in enumerate(p.matrix):
        assert len(row) == q + 1
        torch.testing.assert_close(torch.tensor(row), attn[q, :q + 1], atol=1e-5, rtol=1e-4)

    norms = client.node_activations(NodeActivationsRequest.model_validate(
        {"component": {"kind": "attn_head", "layer": 1, "index": 2}, "prompts": [IOI]}))
    # write norm = probability x ||v_k W_O||: the ratio is the same for every query of a key
    ratio = torch.tensor(norms.prompts[0].matrix[-1]) / torch.tensor(p.matrix[-1])
    for q in range(3, len(p.matrix)):
        torch.testing.assert_close(torch.tensor(norms.prompts[0].matrix[q]) / torch.tensor(p.matrix[q]),
                                   ratio[:q + 1], rtol=1e-4, atol=1e-6)

    latents = client.node_activations(NodeActivationsRequest.model_validate(
        {"component": {"kind": "sae_latent", "layer": 1, "index": 3, "sae": SAE_POINTS[0]}, "prompts": [IOI]}))
    assert len(latents.prompts[0].values) == len(latents.prompts[0].tokens) and min(latents.prompts[0].values) >= 0


def test_generate_matches_transformers_greedy_and_ablated(client, small_checkpoint):
    hf = small_checkpoint[0]
    prompt_ids = client.tokenize(IOI).ids
    result = client.generate(GenerateRequest(prompts=[IOI], max_new_tokens=5))
    with torch.no_grad():
        expected = hf.generate(torch.tensor([prompt_ids]), max_new_tokens=5, do_sample=False, pad_token_id=50256)
    assert result.completions[0].token_ids == expected[0, len(prompt_ids):].tolist()

    ablated_request = {"prompts": [IOI], "max_new_tokens": 5,
                       "interventions": [{"component": {"kind": "mlp_neuron", "layer": l, "index": i}}
                                         for l in (1, 2) for i in range(0, 120, 4)]}  # 60 interventions
    ablated = client.generate(ablated_request)
    ablated_mask = (torch.arange(256) % 4 == 0) & (torch.arange(256) < 120)
    handles = [hf.transformer.h[l].mlp.act.register_forward_hook(lambda m, i, o: o * ~ablated_mask)
               for l in (1, 2)]
    try:
        with torch.no_grad():
            expected = hf.generate(torch.tensor([prompt_ids]), max_new_tokens=5, do_sample=False, pad_token_id=50256)
    finally:
        for h in handles:
            h.remove()
    assert ablated.completions[0].token_ids == expected[0, len(prompt_ids):].tolist()

    # The random model barely reacts to ablations; a large steer of one neuron shows interventions act.
    steer = {"prompts": [IOI], "max_new_tokens": 5, "interventions": [
        {"component": {"kind": "mlp_neuron", "layer": 2, "index": 3}, "action": "steer", "scale": 300.0}]}
    steered_neuron = client.generate(steer).completions[0].token_ids
    shift = torch.zeros(256)
    shift[3] = 300.0
    handle = hf.transformer.h[2].mlp.act.register_forward_hook(lambda m, i, o: o + shift)
    try:
        with torch.no_grad():
            expected = hf.generate(torch.tensor([prompt_ids]), max_new_tokens=5, do_sample=False, pad_token_id=50256)
    finally:
        handle.remove()
    assert steered_neuron == expected[0, len(prompt_ids):].tolist() != result.completions[0].token_ids

    steered = client.generate(GenerateRequest.model_validate(
        {"prompts": [IOI, "The"], "max_new_tokens": 5,
         "interventions": [{"component": {"kind": "sae_latent", "layer": 2, "index": 5, "sae": SAE_POINTS[1]},
                            "action": "steer", "scale": 50.0}]}))
    assert len(steered.completions) == 2
    assert steered.completions[0].token_ids != result.completions[0].token_ids
    sampled = {"prompts": [IOI], "max_new_tokens": 5, "temperature": 1.0, "seed": 3}
    assert client.generate(sampled) == client.generate(sampled | {"top_p": 0.999999})  # seeded: reproducible
    with pytest.raises(ApiError) as e:
        client.generate({"prompts": ["x"], "interventions": [
            {"component": {"kind": "attn_head", "layer": 0, "index": 1}, "action": "steer", "scale": 1.0}]})
    assert e.value.status == 422 and e.value.fields == ["interventions.0.action"]


def test_node_pages(client):
    page = client.node("mlp_neuron", 0, 5)
    assert page.dataset == "toy" and page.data == PAGES[("mlp_neuron", 0, 5)]
    assert client.node("attn_head", 1, 2, dataset="toy").data["index"] == 2
    for kind, layer, index, dataset in (("mlp_neuron", 0, 6, None), ("mlp_neuron", 0, 5, "other")):
        with pytest.raises(ApiError) as e:
            client.node(kind, layer, index, dataset=dataset)
        assert e.value.status == 404
