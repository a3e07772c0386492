"""Bad input over HTTP answers 4xx naming the problem, never 500: non-finite numbers in a request
that fails validation, lone UTF-16 surrogates in any string, over-long lists, literal "None" query
values, unsupported methods; and /readyz neither leaks local paths nor says ok while a compute
process is dead."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from mechscope.activation_server.http.app import create_app
from mechscope.activation_server.http.config import ServerConfig
from mechscope.activation_server.http.state import ServerState
from mechscope.activation_server.schemas import LossSpec, MAX_LOSS_TOKENS
from tests.support.http_fixtures import IOI, LOSS, http_engine, live, node_datasets  # noqa: F401
from tests.support.live_server import LiveServer

API = "/api/v1"


def _post(server, path: str, raw: str) -> httpx.Response:
    return httpx.post(server.url + API + path, content=raw.encode(), headers={"Content-Type": "application/json"},
                      timeout=60)


def _locs(response: httpx.Response) -> list[list]:
    return [item["loc"] for item in response.json()["detail"]]


# --- non-finite numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_in_failing_request_is_422(live, number):
    raw = f'{{"prompts": ["hi"], "temperature": {number}}}'
    r = _post(live, "/generate", raw)
    assert r.status_code == 422, r.text
    assert ["body", "temperature"] in _locs(r)


def test_non_finite_number_where_a_string_belongs_is_422(live):
    r = _post(live, "/attribution", '{"prompts": [{"text": NaN}], "loss": {"targets": [" Mary"]}}')
    assert r.status_code == 422 and ["body", "prompts", 0, "text"] in _locs(r)


# --- lone surrogates -------------------------------------------------------------------------------
@pytest.mark.parametrize("path,raw,loc", [
    ("/logit-lens", '{"prompt": "\\ud800"}', ["body", "prompt"]),
    ("/generate", '{"prompts": ["ok", "a\\udfff b"], "max_new_tokens": 1}', ["body", "prompts"]),
    ("/tokenize", '{"text": "x\\udc00"}', ["body", "text"]),
    ("/attribution", '{"prompts": [{"text": "hi"}], "loss": {"targets": ["\\ud83d"]}}', ["body", "loss", "targets"]),
    ("/attribution", '{"prompts": [{"text": "\\ud800\\ud800"}], "loss": {}}', ["body", "prompts", 0, "text"]),
])
def test_lone_surrogate_is_422_naming_the_field(live, path, raw, loc):
    r = _post(live, path, raw)
    assert r.status_code == 422, r.text
    assert loc in _locs(r)
    assert "surrogate" in r.text or "unicode" in r.text


def test_surrogate_pair_is_accepted(live):
    r = _post(live, "/tokenize", '{"text": "smile \\ud83d\\ude00"}')
    assert r.status_code == 200 and r.json()["ids"]


# --- caps on lists ---------------------------------------------------------------------------------
def test_loss_token_cap_is_in_the_schema_and_enforced(live):
    spec = live_openapi(live)["components"]["schemas"]["LossSpec"]["properties"]
    assert spec["targets"]["maxItems"] == MAX_LOSS_TOKENS and spec["distractors"]["maxItems"] == MAX_LOSS_TOKENS
    too_many = {"prompts": [{"text": IOI}], "loss": {"targets": [" Mary"] * (MAX_LOSS_TOKENS + 1)}}
    r = httpx.post(live.url + API + "/attribution", json=too_many, timeout=60)
    assert r.status_code == 422 and ["body", "loss", "targets"] in _locs(r)
    half = MAX_LOSS_TOKENS // 2 + 1   # each list under its cap, together over it
    both = {"prompts": [{"text": IOI}], "loss": {"targets": [" Mary"] * half, "distractors": [" John"] * half}}
    r = httpx.post(live.url + API + "/attribution", json=both, timeout=60)
    assert r.status_code == 422 and ["body", "loss"] in _locs(r) and "distractors" in r.text
    with pytest.raises(ValueError):
        LossSpec(targets=[" Mary"] * half, distractors=[" John"] * half)


def live_openapi(server) -> dict:
    return httpx.get(server.url + "/openapi.json").json()


def _request_schemas(doc: dict) -> set[str]:
    names = set()
    for path in doc["paths"].values():
        for op in path.values():
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if ref := content.get("schema", {}).get("$ref"):
                names.add(ref.rsplit("/", 1)[1])
    return names


def test_every_list_field_of_every_request_is_capped(live):
    doc = live_openapi(live)
    schemas = doc["components"]["schemas"]
    seen, todo, uncapped = set(), list(_request_schemas(doc)), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for field, prop in schemas[name].get("properties", {}).items():
            for variant in prop.get("anyOf", [prop]):
                if variant.get("type") == "array":
                    if "maxItems" not in variant:
                        uncapped.append(f"{name}.{field}")
                    inner = variant.get("items", {})
                    if inner.get("type") == "array" and "maxItems" not in inner:
                        uncapped.append(f"{name}.{field}[]")
                    if ref := inner.get("$ref"):
                        todo.append(ref.rsplit("/", 1)[1])
                elif ref := variant.get("$ref"):
                    todo.append(ref.rsplit("/", 1)[1])
    assert "AttributionRequest" in seen and "LossSpec" in seen
    assert not uncapped, uncapped


# --- query values, methods -------------------------------------------------------------------------
def test_literal_none_sae_is_not_cached_as_no_sae(live):
    first = httpx.get(live.url + API + "/nodes/mlp_neuron/0/5")
    assert first.status_code == 200
    r = httpx.get(live.url + API + "/nodes/mlp_neuron/0/5", params={"sae": "None"})
    # the toy dataset has no hook points: any sae is ignored, but the answer is computed, not a
    # cache hit under the key of "no sae"
    assert r.status_code == 200
    r = httpx.get(live.url + API + "/nodes/mlp_neuron/0/5", params={"dataset": "None"})
    assert r.status_code == 404 and "None" in r.json()["detail"]


@pytest.mark.parametrize("method,path", [("PUT", "/attribution"), ("DELETE", "/info"), ("PATCH", "/generate"),
                                         ("POST", "/info")])
def test_unsupported_method_is_405(live, method, path):
    r = httpx.request(method, live.url + API + path)
    assert r.status_code == 405, r.text
    assert r.headers.get("allow")


def test_unsupported_method_is_405_with_the_viewer_mounted(http_engine, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    state = ServerState.ready_with(http_engine, {})
    with LiveServer(create_app(state, ServerConfig(viewer_dir=tmp_path))) as server:
        assert httpx.put(server.url + API + "/attribution").status_code == 405
        assert httpx.get(server.url + API + "/nope").status_code == 404
        assert "id=root" in httpx.get(server.url + "/nodes/mlp_neuron/1/2").text


# --- readiness -------------------------------------------------------------------------------------
def test_readyz_shows_no_local_paths(http_engine):
    state = ServerState()

    def loader():
        raise FileNotFoundError("no checkpoint at /home/alice/secret/model.safetensors")

    state.load_in_background(loader).join(10)
    with LiveServer(create_app(state, ServerConfig(viewer_dir=None, auth_token="t0k"))) as server:
        r = httpx.get(server.url + "/readyz")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "/home/alice" not in r.text and "FileNotFoundError" in r.json()["detail"]
        authed = httpx.get(server.url + "/readyz", headers={"Authorization": "Bearer t0k"})
        assert "/home/alice/secret/model.safetensors" in authed.json()["detail"]


@pytest.mark.slow
def test_readyz_notices_a_dead_compute_process_at_once(small_checkpoint):
    from mechscope.activation_server.engine.loading import EngineSpec, load_engine
    from mechscope.activation_server.http.compute_processes import EngineProcesses
    spec = EngineSpec(model=str(small_checkpoint[1]))
    processes = EngineProcesses(spec, 1)
    processes.start()
    try:
        state = ServerState()
        state._set_ready(load_engine(spec, verbose=False), {}, processes)
        with LiveServer(create_app(state, ServerConfig(viewer_dir=None, compute_processes=1))) as server:
            assert httpx.get(server.url + "/readyz").status_code == 200
            os.kill(processes.worker_pids()[0], signal.SIGKILL)
            time.sleep(0.3)
            r = httpx.get(server.url + "/readyz")
            assert r.status_code == 503 and "compute process" in r.json()["detail"]
            deadline = time.monotonic() + 120
            while httpx.get(server.url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the compute processes did not come back"
                time.sleep(0.2)
            assert processes.restarts == 1
    finally:
        processes.shutdown()
