"""Pytest fixtures for the HTTP tests: an engine on the small random model with two random SAEs,
a tiny node dataset on a local blob store, and a live server around them. Import the fixtures
into a test module (``from tests.support.http_fixtures import *``)."""

from __future__ import annotations

import pytest
import torch

from mechscope.activation_server.http.app import create_app
from mechscope.activation_server.http.config import ServerConfig
from mechscope.activation_server.http.state import ServerState
from mechscope.autoencoders import SAEConfig, SparseAutoencoder
from mechscope.datasets.stores import LocalBlobStore

from .json_node_dataset import JsonNodeDataset
from .live_server import LiveServer

SAE_POINTS = ("blocks.1.hook_mlp_out", "blocks.2.hook_attn_out")
N_LATENTS = 96
IOI = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
LOSS = {"targets": [" Mary"], "distractors": [" John"]}


def random_sae(point: str, d_in: int, seed: int) -> SparseAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    tensors = {"W_enc": torch.randn(d_in, N_LATENTS, generator=gen) / d_in ** 0.5,
               "b_enc": torch.randn(N_LATENTS, generator=gen) * 0.05,
               "W_dec": torch.randn(N_LATENTS, d_in, generator=gen) / N_LATENTS ** 0.5,
               "b_dec": torch.randn(d_in, generator=gen) * 0.05}
    return SparseAutoencoder.from_tensors(SAEConfig(d_in=d_in, n_latents=N_LATENTS, hook_point=point), tensors)


@pytest.fixture(scope="session")
def http_engine(small_model):
    from mechscope.activation_server.engine.engine import Engine
    d = small_model.cfg.d_model
    return Engine(small_model, [random_sae(p, d, seed) for seed, p in enumerate(SAE_POINTS)])


PAGES = {("mlp_neuron", 0, 5): {"kind": "mlp_neuron", "layer": 0, "index": 5,
                                 "top_examples": [{"tokens": ["a", " b"], "activations": [0.5, 1.5]}],
                                 "stats": {"mean": 0.25}},
         ("attn_head", 1, 2): {"kind": "attn_head", "layer": 1, "index": 2, "top_examples": []}}


@pytest.fixture(scope="session")
def node_datasets(tmp_path_factory):
    store = LocalBlobStore(tmp_path_factory.mktemp("node_datasets"))
    JsonNodeDataset.write(store, "toy", PAGES, {"format": "json-pages", "model": "small"})
    return {"toy": JsonNodeDataset(store, "toy")}


def make_app(engine, datasets=None, **config):
    config.setdefault("viewer_dir", None)
    return create_app(ServerState.ready_with(engine, datasets or {}), ServerConfig(**config))


@pytest.fixture(scope="session")
def live(http_engine, node_datasets):
    """A live server with default limits, no auth."""
    with LiveServer(make_app(http_engine, node_datasets)) as server:
        yield server
