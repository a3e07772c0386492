"""Independent attribution requests answered in one shared forward/backward pass give each request
what it gets alone; a bad request fails alone."""

from __future__ import annotations

import pytest

from mechscope.activation_server.errors import RequestError
from mechscope.activation_server.schemas import (AttributionRequest, AttributionResult, NodeIntervention, NodeRef, PromptSpec,
                                                 TraceSpec)
from tests.support.attribution_compare import assert_same_attribution

IOI = "When Mary and John went to the store, John gave a drink to"
SHORT = "When Mary and John went, John gave it to"
LONG = "Then, Mary and John had a lot of fun at the park. After the lunch, John gave a drink to"
LOSS = {"targets": [" Mary"], "distractors": [" John"]}


def _iv(kind, layer, index, mode="zero", position=-1, **extra):
    return NodeIntervention(node=NodeRef(kind=kind, layer=layer, index=index, position=position, **extra), mode=mode,
                            **({"source_prompt": 1} if mode == "patch" else {}))


def mixed_requests() -> list[AttributionRequest]:
    """Different prompt lengths, every intervention mode, latents and neurons, both losses, a trace."""
    return [
        AttributionRequest(prompts=[PromptSpec(text=IOI, interventions=[_iv("mlp_neuron", 1, 3)]),
                                    PromptSpec(text=SHORT)], loss=LOSS, top_k=6),
        AttributionRequest(prompts=[PromptSpec(text=LONG, interventions=[_iv("attn_head", 2, 1, "mean")])],
                           loss={"kind": "log_prob", "targets": [" Mary"]}, top_k=4),
        AttributionRequest(prompts=[PromptSpec(text=SHORT, interventions=[_iv("mlp_neuron", 0, 7, "resample")]),
                                    PromptSpec(text=IOI)], loss=LOSS, top_k=5),
        AttributionRequest(prompts=[PromptSpec(text=IOI, interventions=[_iv("attn_head", 1, 2, "patch")]),
                                    PromptSpec(text=LONG)], loss=LOSS, alignment="end", top_k=3),
        AttributionRequest(prompts=[PromptSpec(text=IOI, interventions=[_iv("attn_head", 0, 0, key_position=2)])],
                           loss={"targets": [" John"], "distractors": [" Mary"]}, mlp="latents", top_k=7),
        AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LOSS, mlp="latents", attention="latents", top_k=5),
        AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LOSS, top_k=5,
                           trace=TraceSpec(node=NodeRef(kind="mlp_neuron", layer=2, index=5, position=-1),
                                           through="pre")),
    ]


def test_each_request_in_a_shared_pass_gets_its_result_alone(engine):
    requests = mixed_requests()
    shared = engine.attribute_many(requests)
    assert len(shared) == len(requests)
    for request, got in zip(requests, shared):
        assert_same_attribution(got, engine.attribute(request))


def test_requests_in_a_shared_pass_do_not_see_each_others_interventions(engine):
    plain = AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LOSS, top_k=5)
    ablated = AttributionRequest(prompts=[PromptSpec(text=IOI, interventions=[_iv("attn_head", 2, h) for h in range(4)])],
                                 loss=LOSS, top_k=5)
    shared_plain, shared_ablated = engine.attribute_many([plain, ablated])
    alone_plain, alone_ablated = engine.attribute(plain).prompts[0].loss, engine.attribute(ablated).prompts[0].loss
    assert abs(alone_ablated - alone_plain) > 1e-4  # the ablation matters (this random model's effects are small)
    assert shared_plain.prompts[0].loss == pytest.approx(alone_plain, abs=1e-6)
    assert shared_ablated.prompts[0].loss == pytest.approx(alone_ablated, abs=1e-6)


def test_a_bad_request_fails_alone_with_its_field(engine):
    good = mixed_requests()[:2]
    bad_position = AttributionRequest(prompts=[PromptSpec(text=SHORT, interventions=[_iv("mlp_neuron", 1, 3, position=40)])],
                                      loss=LOSS)
    bad_target = AttributionRequest(prompts=[PromptSpec(text=IOI)], loss={"targets": [" Mary Ann"], "distractors": [" John"]})
    out = engine.attribute_many([good[0], bad_position, good[1], bad_target])
    assert isinstance(out[1], RequestError) and out[1].field == "prompts[0].interventions[0].node.position"
    assert isinstance(out[3], RequestError) and out[3].field.startswith("loss.targets")
    assert_same_attribution(out[0], engine.attribute(good[0]))
    assert_same_attribution(out[2], engine.attribute(good[1]))


def test_the_servers_json_is_the_validated_results_json(engine):
    # The server sends the answers' plain data straight to JSON without building the models; it
    # must be byte for byte what the validated AttributionResult would send (same fields, order, types).
    requests = mixed_requests()
    for request, sent, result in zip(requests, engine.attribute_many_json(requests), engine.attribute_many(requests)):
        assert isinstance(sent, bytes), sent
        assert sent == result.model_dump_json().encode()


def test_a_bad_request_is_an_error_in_its_json_slot(engine):
    bad = AttributionRequest(prompts=[PromptSpec(text=IOI)], loss={"targets": [" Mary"], "distractors": [" John"],
                                                                   "position": 99})
    good = AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LOSS, top_k=3)
    sent_bad, sent_good = engine.attribute_many_json([bad, good])
    assert isinstance(sent_bad, RequestError) and sent_bad.field == "loss.position"
    assert AttributionResult.model_validate_json(sent_good).nodes


def test_an_unexpected_failure_of_the_shared_pass_fails_only_the_request_that_causes_it(engine, monkeypatch):
    # A bug that one request triggers (here: building the answer of the request with top_k 13
    # raises a RuntimeError) must not take the requests sharing its pass down with it.
    from mechscope.activation_server.engine import shared_passes

    real_answers = shared_passes._answers

    def answers(shared):
        if any(m.request.top_k == 13 for m in shared.members):
            raise RuntimeError("boom")
        return real_answers(shared)

    requests = [AttributionRequest(prompts=[PromptSpec(text=IOI)], loss=LOSS, top_k=k) for k in (4, 13, 6)]
    alone = [engine.attribute(requests[0]), None, engine.attribute(requests[2])]
    monkeypatch.setattr(shared_passes, "_answers", answers)
    out = engine.attribute_many(requests)
    assert isinstance(out[1], RuntimeError) and str(out[1]) == "boom"
    assert_same_attribution(out[0], alone[0])
    assert_same_attribution(out[2], alone[2])
    with pytest.raises(RuntimeError, match="boom"):
        engine.attribute(requests[1])                      # alone, the error is raised as before
