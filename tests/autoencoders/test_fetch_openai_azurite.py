"""Fetch OpenAI SAEs by name from a real Blob service (Azurite) at the public layout, then from cache."""

from __future__ import annotations

import pytest
import torch
from azure.storage.blob import BlobServiceClient

from mechscope.autoencoders import load_sae, save_sae
from mechscope.autoencoders.fetch import AZURE_API_VERSION, OPENAI_CONTAINER, openai_cache_path
from mechscope.autoencoders.specs import parse_sae_spec
from mechscope.inference.errors import DownloadError
from tests.support.azurite import azurite  # noqa: F401  (pytest fixture)

from .helpers import D_IN, random_inputs, random_sae


def _publish(server, blobs: dict[str, bytes]) -> None:
    service = BlobServiceClient.from_connection_string(server.connection_string, api_version=AZURE_API_VERSION)
    container = service.get_container_client(OPENAI_CONTAINER)
    container.create_container(public_access="container")  # openaipublic is anonymously readable
    for name, data in blobs.items():
        container.upload_blob(name, data)


def test_fetch_by_name_anonymously_then_from_cache(azurite, tmp_path):  # noqa: F811
    topk = random_sae(seed=3, activation="topk", k=8, input_normalization="layer_norm")
    relu = random_sae(seed=4, activation="relu")
    files = {}
    for name, sae in (("topk.pt", topk), ("relu.pt", relu)):
        files[name] = save_sae(sae, tmp_path / "src" / name, format="openai").read_bytes()
    _publish(azurite, {
        "gpt2-small/resid_delta_mlp_v5_32k/autoencoders/3.pt": files["topk.pt"],
        "gpt2-small/mlp_post_act/autoencoders/1.pt": files["relu.pt"],
    })
    cache = tmp_path / "cache"
    x = random_inputs(2, 5, D_IN)

    # anonymous access through the account URL, as against openaipublic
    fetched = load_sae("openai:gpt2-small/resid_delta_mlp_v5_32k/3", cache_dir=cache,
                       openai_account_url=azurite.blob_endpoint, progress=False)
    assert fetched.config.hook_point == "blocks.3.hook_mlp_out"
    assert fetched.config.source["name"] == "openai:gpt2-small/resid_delta_mlp_v5_32k/3"
    assert (fetched.config.activation, fetched.config.k, fetched.config.input_normalization) == ("topk", 8, "layer_norm")
    cached = openai_cache_path(parse_sae_spec("openai:gpt2-small/resid_delta_mlp_v5_32k/3"), cache)
    assert cached.read_bytes() == files["topk.pt"]
    with torch.no_grad():
        assert torch.equal(fetched.encode(x), topk.encode(x))
        assert torch.equal(fetched(x), topk(x))

    # through a connection string
    v1 = load_sae("openai:gpt2-small/mlp_post_act/1", cache_dir=cache,
                  openai_connection_string=azurite.connection_string, progress=False)
    assert v1.config.hook_point == "blocks.1.mlp.hook_post"
    with torch.no_grad():
        assert torch.equal(v1.encode(x), relu.encode(x))

    # a blob that does not exist
    with pytest.raises(DownloadError, match=r"resid_delta_mlp_v5_32k/autoencoders/4\.pt: no such blob"):
        load_sae("openai:gpt2-small/resid_delta_mlp_v5_32k/4", cache_dir=cache,
                 openai_account_url=azurite.blob_endpoint, progress=False)
    assert not list(cached.parent.glob("*.part"))

    # second fetch: served from the cache, the service is not needed
    azurite.stop()
    again = load_sae("openai:gpt2-small/resid_delta_mlp_v5_32k/3", cache_dir=cache,
                     openai_account_url=azurite.blob_endpoint, progress=False)
    with torch.no_grad():
        assert torch.equal(again.encode(x), topk.encode(x))
