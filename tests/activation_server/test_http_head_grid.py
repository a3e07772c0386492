"""POST /api/v1/heads/grid over a real uvicorn server: the engine's own answer, and a too-long
prompt is a 422 naming the field."""

from __future__ import annotations

import httpx

from mechscope.activation_server.engine.head_grid import head_grid
from mechscope.activation_server.schemas import HeadGridRequest, HeadGridResult
from mechscope.activation_server.client import Client
from mechscope.activation_server.schemas import LossSpec
from tests.support.http_fixtures import IOI, LOSS, http_engine, live, node_datasets  # noqa: F401


def test_head_grid_over_http_equals_the_engine(live, http_engine):
    request = HeadGridRequest(prompt=IOI, loss=LossSpec.model_validate(LOSS))
    r = httpx.post(f"{live.url}/api/v1/heads/grid", json=request.model_dump(mode="json"), timeout=60)
    assert r.status_code == 200, r.text
    assert HeadGridResult.model_validate(r.json()) == head_grid(http_engine, request)
    with Client(live.url) as client:                       # the typed client says the same
        assert client.head_grid({"prompt": IOI, "loss": LOSS}) == head_grid(http_engine, request)
    too_long = httpx.post(f"{live.url}/api/v1/heads/grid", json={"prompt": "word " * 500, "loss": LOSS}, timeout=60)
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"][-1] == "prompt"
