"""The dataset store (Azurite) goes down: node pages answer 503 with a message naming the store,
inference keeps working, and pages come back when the store does."""

import uuid

import httpx
import pytest

from mechscope.datasets.stores import AzureBlobStore, RetryPolicy
from tests.support.azurite import module_azurite  # noqa: F401 (the `azurite` fixture)
from tests.support.http_fixtures import IOI, LOSS, PAGES, http_engine, make_app  # noqa: F401 (fixtures)
from tests.support.json_node_dataset import JsonNodeDataset
from tests.support.live_server import LiveServer


@pytest.fixture(scope="module")
def azure_pages(azurite):
    store = AzureBlobStore.from_connection_string(azurite.connection_string, f"c{uuid.uuid4().hex[:16]}",
                                                  retry=RetryPolicy(attempts=2, initial_delay_s=0.01, max_delay_s=0.02))
    store.container_client.create_container()
    JsonNodeDataset.write(store, "toy", PAGES, {"format": "json-pages", "model": "small"})
    return JsonNodeDataset(store, "toy")


def test_store_outage_gives_503_for_pages_only_and_recovers(azurite, azure_pages, http_engine):
    with LiveServer(make_app(http_engine, {"toy": azure_pages})) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/api/v1/nodes/mlp_neuron/0/5").status_code == 200
        azurite.stop()
        try:
            down = client.get("/api/v1/nodes/attn_head/1/2")
            assert down.status_code == 503 and "Retry-After" in down.headers
            assert "dataset store is unavailable" in down.json()["detail"]  # no internal URLs to clients
            attribution = client.post("/api/v1/attribution", json={"prompts": [{"text": IOI}], "loss": LOSS})
            assert attribution.status_code == 200
        finally:
            azurite.start()
        assert client.get("/api/v1/nodes/attn_head/1/2").status_code == 200
