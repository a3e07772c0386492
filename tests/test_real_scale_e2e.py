"""End to end at real scale: a GPT-2-small-shaped checkpoint (random weights, 124M parameters)
downloaded from the local hub-layout server, two OpenAI-format 32k-latent SAEs (v5 TopK at
resid_delta_mlp) fetched from Azurite at the public container layout, and `mechscope serve` (one
compute process, shared weights) answering a node table with latents that matches the same
engine built in this process from the same files. Prints the node-table latency and the
server's memory (PSS of the server and its descendants)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.support.azurite import azurite  # noqa: F401  (pytest fixture)
from tests.support.hub_server import HubServer
from tests.support.live_server import ServeProcess

REPO = "someone/gpt2-small-random"
LAYERS = (2, 5)
N_LATENTS = 32768
BODY = {"prompts": [{"text": "When Mary and John went to the store, John gave a drink to"}], "mlp": "latents",
        "loss": {"targets": [" Mary"], "distractors": [" John"]}, "top_k": 30}


def _pss_mb(pid: int) -> float:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))
    try:
        from server_memory import pss_mb
    finally:
        sys.path.pop(0)
    return pss_mb(pid)[0]


def _openai_sae(layer: int):  # type: ignore[no-untyped-def]
    from mechscope.autoencoders import SAEConfig, SparseAutoencoder
    d = 768
    sae = SparseAutoencoder(SAEConfig(d_in=d, n_latents=N_LATENTS, activation="topk", k=32,
                                      input_normalization="layer_norm", hook_point=f"blocks.{layer}.hook_mlp_out"))
    g = torch.Generator().manual_seed(layer)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d, N_LATENTS, generator=g) / d ** 0.5)
        sae.W_dec.copy_(torch.randn(N_LATENTS, d, generator=g) / N_LATENTS ** 0.5)
        sae.b_dec.copy_(torch.randn(d, generator=g) * 0.01)
    return sae


@pytest.mark.slow
def test_gpt2_small_from_the_hub_with_openai_saes_from_azure(azurite, tmp_path):  # noqa: F811
    from azure.storage.blob import BlobServiceClient

    from mechscope.activation_server.engine import Engine
    from mechscope.autoencoders import load_sae, save_sae
    from mechscope.autoencoders.fetch import AZURE_API_VERSION, OPENAI_CONTAINER
    from mechscope.inference import GPT2, GPT2Config, load_model, save_pretrained
    from mechscope.activation_server.schemas import AttributionRequest

    model = GPT2(GPT2Config(n_layers=12, n_heads=12, d_model=768, n_ctx=1024, name="gpt2-small-random"))
    model.init_weights(seed=0)
    save_pretrained(model, tmp_path / "checkpoint")
    del model
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=AZURE_API_VERSION)
    container = service.get_container_client(OPENAI_CONTAINER)
    container.create_container(public_access="container")
    names = []
    for layer in LAYERS:
        path = save_sae(_openai_sae(layer), tmp_path / f"sae{layer}.pt", format="openai")
        with path.open("rb") as f:
            container.upload_blob(f"gpt2-small/resid_delta_mlp_v5_32k/autoencoders/{layer}.pt", f)
        names.append(f"openai:gpt2-small/resid_delta_mlp_v5_32k/{layer}")

    with HubServer({REPO: tmp_path / "checkpoint"}) as hub:
        env = {"MECHSCOPE_HUB_ENDPOINT": hub.url, "MECHSCOPE_CACHE_DIR": str(tmp_path / "cache"),
               "MECHSCOPE_OPENAI_ACCOUNT_URL": azurite.blob_endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        args = ["--model", REPO, "--compute-processes", "1", "--cache-size", "0", "--viewer-dir", str(tmp_path / "none")]
        for name in names:
            args += ["--sae", name]
        with ServeProcess(args, env=env, start_timeout=300) as server:
            assert server.wait_ready(timeout=600).status_code == 200, server.output()
            info = httpx.get(server.url + "/api/v1/info", timeout=30).json()
            assert info["model"]["d_model"] == 768 and info["model"]["n_layer"] == 12
            assert sorted(s["n_latents"] for s in info["saes"]) == [N_LATENTS, N_LATENTS]
            first = httpx.post(server.url + "/api/v1/attribution", json=BODY, timeout=600)
            assert first.status_code == 200, first.text
            start = time.perf_counter()
            again = httpx.post(server.url + "/api/v1/attribution", json=BODY, timeout=600)
            latency = time.perf_counter() - start
            memory = _pss_mb(server.process.pid)
    print(f"\nreal scale: node table with latents in {latency * 1000:.0f} ms (warm, 1 compute process); "
          f"server + compute process {memory:.0f} MB PSS")

    result = again.json()
    latents = [row for row in result["nodes"] if row["kind"] == "sae_latent"]
    assert latents and {row["sae"] for row in latents} <= {f"blocks.{layer}.hook_mlp_out" for layer in LAYERS}
    # the same engine, built here from the same files (no server, no hub, no Azure)
    saes = [load_sae(tmp_path / f"sae{layer}.pt", hook_point=f"blocks.{layer}.hook_mlp_out") for layer in LAYERS]
    local = Engine(load_model(tmp_path / "checkpoint"), saes).attribute(AttributionRequest.model_validate(BODY))
    assert [row.key for row in local.nodes] == [row["key"] for row in result["nodes"]]
    assert abs(local.prompts[0].loss - result["prompts"][0]["loss"]) < 1e-4 * max(1.0, abs(local.prompts[0].loss))
