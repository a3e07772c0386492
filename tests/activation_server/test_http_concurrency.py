"""Parallel clients get the serial answers (their requests share forward/backward passes, so up
to float rounding); a bad request among them fails alone; a saturated server refuses with 503 +
Retry-After instead of queueing without bound; identical requests hit the cache."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from mechscope.activation_server.client import Client
from tests.support.attribution_compare import assert_same_attribution
from tests.support.http_fixtures import IOI, IOI_CORRUPTED, LOSS, SAE_POINTS, http_engine, make_app  # noqa: F401
from tests.support.live_server import LiveServer


def ablation_request(i: int) -> dict:
    """Eight different requests: each ablates (or patches) a different node."""
    nodes = [{"kind": "mlp_neuron", "layer": i % 3, "index": 10 * i, "position": -1},
             {"kind": "attn_head", "layer": i % 3, "index": i % 4, "position": -1},
             {"kind": "attn_head", "layer": 1, "index": i % 4, "position": -1, "key_position": 2},
             {"kind": "sae_latent", "layer": 1, "index": i, "position": -2, "sae": SAE_POINTS[0]}]
    mode = ["zero", "mean", "resample", "patch"][i % 4]
    node = nodes[i % 4]
    if node.get("key_position") is not None:
        mode = "zero"
    iv = {"node": node, "mode": mode, **({"source_prompt": 1} if mode == "patch" else {})}
    return {"prompts": [{"text": IOI, "interventions": [iv]}, {"text": IOI_CORRUPTED}], "loss": LOSS,
            "mlp": "latents" if i % 2 else "neurons", "top_k": 5 + i}


def _in_parallel(bodies: list[dict], send) -> list:
    """``send(body)`` for every body from its own thread, all released at once."""
    barrier = threading.Barrier(len(bodies))

    def one(body):
        barrier.wait()
        return send(body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_parallel_clients_get_the_serial_results(http_engine):
    requests = [ablation_request(i) for i in range(8)]
    with LiveServer(make_app(http_engine, workers=1, max_queue=16, cache_size=0)) as server:
        with Client(server.url) as client:
            serial = [client.attribute(r) for r in requests]
        coalescer = server.app.state.attribution_coalescer
        calls_before = coalescer.calls
        def attribute(body):
            with Client(server.url) as c:
                return c.attribute(body)

        parallel = _in_parallel(requests, attribute)
        shared_calls = coalescer.calls - calls_before
    for got, want in zip(parallel, serial):
        assert_same_attribution(got, want)
    assert len({r.model_dump_json() for r in serial}) == 8  # the requests really differ
    assert shared_calls < 8  # they did share passes


def test_a_bad_request_among_parallel_ones_fails_alone(http_engine):
    bodies = [ablation_request(i) for i in range(6)]
    bodies[2] = {**bodies[2], "loss": {"targets": [" Mary Ann"], "distractors": [" John"]}}
    with LiveServer(make_app(http_engine, workers=1, max_queue=16, cache_size=0)) as server:
        responses = _in_parallel(bodies, lambda body: httpx.post(f"{server.url}/api/v1/attribution", json=body, timeout=120))
        with Client(server.url) as client:
            for i, r in enumerate(responses):
                if i == 2:
                    assert r.status_code == 422
                    assert r.json()["detail"][0]["loc"][:3] == ["body", "loss", "targets"]
                else:
                    assert r.status_code == 200, r.text
                    assert_same_attribution(type(client.attribute(bodies[i])).model_validate(r.json()),
                                            client.attribute(bodies[i]))


def test_overload_gives_503_with_retry_after_and_no_other_errors(http_engine):
    burst = 12
    with LiveServer(make_app(http_engine, workers=1, max_queue=1, cache_size=0, retry_after_s=3)) as server:
        barrier = threading.Barrier(burst)

        def one(i):
            body = {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 1 + i}
            with httpx.Client(base_url=server.url, timeout=120) as http:
                barrier.wait()
                return http.post("/api/v1/attribution", json=body)

        with ThreadPoolExecutor(burst) as pool:
            responses = list(pool.map(one, range(burst)))
        codes = [r.status_code for r in responses]
        assert codes.count(503) >= 1 and codes.count(200) >= 2, codes
        assert set(codes) == {200, 503}, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "3" and "busy" in r.json()["detail"]
        assert server.app.state.runner.admitted == 0  # every admitted call was released


def test_identical_requests_hit_the_cache(http_engine):
    with LiveServer(make_app(http_engine, cache_size=4)) as server, Client(server.url) as client:
        cache = server.app.state.cache
        body = ablation_request(3)
        first = client.attribute(body)
        reordered = {k: body[k] for k in reversed(list(body))}  # same request, other key order
        assert client.attribute(reordered) == first
        assert (cache.hits, cache.misses) == (1, 1)
        client.attribute(ablation_request(4))
        assert (cache.hits, cache.misses) == (1, 2)
