"""Auth, CORS, limits, body size, error bodies and readiness, over a real uvicorn server."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from mechscope.activation_server.http.app import create_app
from mechscope.activation_server.http.config import Limits, ServerConfig
from mechscope.activation_server.http.state import ServerState
from mechscope.datasets.stores import LocalBlobStore
from tests.support.http_fixtures import IOI, LOSS, http_engine, live, make_app, node_datasets  # noqa: F401
from tests.support.json_node_dataset import JsonNodeDataset
from tests.support.live_server import LiveServer

ATTRIBUTION = {"prompts": [{"text": IOI}], "loss": LOSS, "top_k": 3}


def test_bearer_token_protects_the_api_only(http_engine):
    with LiveServer(make_app(http_engine, auth_token="s3cret")) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}):
            r = http.get("/api/v1/info", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert http.post("/api/v1/attribution", json=ATTRIBUTION, headers=headers).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert http.get("/api/v1/info", headers=ok).json()["auth_required"] is True
        assert http.post("/api/v1/attribution", json=ATTRIBUTION, headers=ok).status_code == 200


def test_no_token_configured_means_open(live):
    assert httpx.get(live.url + "/api/v1/info").status_code == 200


def test_cors_allow_list(http_engine, live):
    def preflight(url, origin):
        return httpx.options(url + "/api/v1/attribution", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})

    for origin in ("http://localhost:5173", "http://127.0.0.1:8000"):  # default: localhost origins
        r = httpx.get(live.url + "/api/v1/info", headers={"Origin": origin})
        assert r.headers["access-control-allow-origin"] == origin
        assert preflight(live.url, origin).headers["access-control-allow-origin"] == origin
    for origin in ("https://evil.example", "http://localhost.evil.example"):
        assert "access-control-allow-origin" not in httpx.get(live.url + "/api/v1/info", headers={"Origin": origin}).headers
        assert "access-control-allow-origin" not in preflight(live.url, origin).headers

    with LiveServer(make_app(http_engine, allowed_origins=("https://lab.example.org",))) as server:
        r = httpx.get(server.url + "/api/v1/info", headers={"Origin": "https://lab.example.org"})
        assert r.headers["access-control-allow-origin"] == "https://lab.example.org"
        r = httpx.get(server.url + "/api/v1/info", headers={"Origin": "http://localhost:5173"})
        assert "access-control-allow-origin" not in r.headers


def _only_error(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text[:300]
    (item,) = response.json()["detail"]
    return item


@pytest.fixture(scope="module")
def limited(http_engine):
    limits = Limits(max_prompt_tokens=12, max_prompts=2, max_top_k=5, max_sweep_cells=10, max_new_tokens=4,
                    max_interventions=1, max_body_bytes=4000)
    with LiveServer(make_app(http_engine, limits=limits)) as server:
        yield server


@pytest.mark.parametrize("path,body,loc,limit", [
    ("attribution", {**ATTRIBUTION, "top_k": 6}, ["body", "top_k"], 5),
    ("attribution", {"prompts": [{"text": "a"}] * 3, "loss": LOSS, "top_k": 3}, ["body", "prompts"], 2),
    ("attribution", {"prompts": [{"text": "a"}, {"text": IOI}], "loss": LOSS, "top_k": 3}, ["body", "prompts", 1, "text"], 12),
    ("attribution", {"prompts": [{"text": "a b", "interventions": [
        {"node": {"kind": "mlp_neuron", "layer": 0, "index": i, "position": 0}} for i in range(2)]}], "loss": LOSS, "top_k": 3},
     ["body", "prompts", 0, "interventions"], 1),
    ("patching/sweep", {"clean": "a b c", "corrupted": "a b d", "loss": LOSS, "kind": "heads"}, ["body", "kind"], 10),
    ("generate", {"prompts": ["a"], "max_new_tokens": 5}, ["body", "max_new_tokens"], 4),
    ("logit-lens", {"prompt": "a", "top_k": 50}, ["body", "top_k"], 5),
    ("write-tokens", {"node": {"kind": "mlp_neuron", "layer": 0, "index": 1, "position": 0}, "k": 9}, ["body", "k"], 5),
])
def test_limits_answer_422_naming_field_and_limit(limited, path, body, loc, limit):
    item = _only_error(httpx.post(f"{limited.url}/api/v1/{path}", json=body))
    assert item["loc"] == loc and item["type"] == "limit_exceeded" and item["ctx"] == {"limit": limit}
    assert str(limit) in item["msg"]


def test_limits_are_reported_in_info(limited):
    assert httpx.get(limited.url + "/api/v1/info").json()["limits"]["max_prompt_tokens"] == 12


def test_big_bodies_get_413(limited):
    big = json.dumps({"text": "x" * 5000}).encode()
    r = httpx.post(limited.url + "/api/v1/tokenize", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "4000" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'
    r = httpx.post(limited.url + "/api/v1/tokenize", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert httpx.post(limited.url + "/api/v1/tokenize", json={"text": "x" * 100}).status_code == 200


def test_engine_and_validation_errors_use_fastapi_shape(live):
    item = _only_error(httpx.post(live.url + "/api/v1/attribution", json={
        "prompts": [{"text": IOI}], "loss": {"targets": [" Maryxyzzy"], "distractors": [" John"]}}))
    assert item["loc"] == ["body", "loss", "targets", 0] and item["type"] == "invalid_input"
    assert "single token" in item["msg"]
    item = _only_error(httpx.post(live.url + "/api/v1/attribution", json={"prompts": [{"text": IOI, "interventions": [
        {"node": {"kind": "mlp_neuron", "layer": 9, "index": 0, "position": 0}}]}], "loss": LOSS}))
    assert item["loc"] == ["body", "prompts", 0, "interventions", 0, "node", "layer"]
    r = httpx.post(live.url + "/api/v1/attribution", json={"prompts": [], "loss": LOSS})  # pydantic validation
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompts"]
    r = httpx.post(live.url + "/api/v1/attribution", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_unexpected_errors_are_500_with_an_id_and_no_traceback(http_engine, tmp_path, caplog):
    store = LocalBlobStore(tmp_path)
    JsonNodeDataset.write(store, "broken", {}, {"format": "json-pages"})
    store.write("broken/mlp_neuron/0/0.json", b"{truncated")  # the dataset fails with a JSONDecodeError
    with LiveServer(make_app(http_engine, {"broken": JsonNodeDataset(store, "broken")})) as server:
        r = httpx.get(server.url + "/api/v1/nodes/mlp_neuron/0/0")
    assert r.status_code == 500
    body = r.json()
    assert body["detail"] == "internal server error" and len(body["error_id"]) == 12
    assert "Traceback" not in r.text and "JSONDecodeError" not in r.text and "File \"" not in r.text
    assert body["error_id"] in caplog.text  # the log has it, with the traceback


def test_readiness_while_loading(http_engine):
    release = threading.Event()
    state = ServerState()

    def loader():
        release.wait(30)
        return http_engine, {}

    state.load_in_background(loader)
    with LiveServer(create_app(state, ServerConfig(viewer_dir=None))) as server:
        assert httpx.get(server.url + "/healthz").status_code == 200
        r = httpx.get(server.url + "/readyz")
        assert r.status_code == 503 and r.json()["status"] == "loading" and "retry-after" in r.headers
        assert httpx.get(server.url + "/api/v1/info").status_code == 503
        release.set()
        for _ in range(100):
            if httpx.get(server.url + "/readyz").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert httpx.get(server.url + "/api/v1/info").status_code == 200


def test_failed_loading_is_reported(http_engine):
    state = ServerState()

    def loader():
        raise FileNotFoundError("no checkpoint at /nowhere")

    state.load_in_background(loader).join(10)
    with LiveServer(create_app(state, ServerConfig(viewer_dir=None))) as server:
        r = httpx.get(server.url + "/readyz")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "FileNotFoundError" in r.json()["detail"] and "/nowhere" not in r.json()["detail"]  # no paths


def test_viewer_static_files_with_spa_fallback(http_engine, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    with LiveServer(make_app(http_engine, viewer_dir=tmp_path)) as server:
        assert "id=root" in httpx.get(server.url + "/").text
        assert httpx.get(server.url + "/assets/app.js").text == "console.log(1)"
        assert "id=root" in httpx.get(server.url + "/nodes/mlp_neuron/1/2").text  # client-side route
        r = httpx.get(server.url + "/api/v1/nope")
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
        assert httpx.get(server.url + "/../../etc/passwd").status_code in (200, 404)  # never outside the dir
        assert "root:" not in httpx.get(server.url + "/%2e%2e/%2e%2e/etc/passwd").text
    with LiveServer(make_app(http_engine, viewer_dir=tmp_path / "missing")) as server:
        assert "not built" in httpx.get(server.url + "/").json()["detail"]
        assert "not built" in httpx.get(server.url + "/", headers={"Accept": "text/html"}).text
