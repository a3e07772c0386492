"""Fetching a SAELens SAE by name from a hub-style server (a real HTTP server on 127.0.0.1 with the
hub's URL layout), then from the cache."""

import torch

from mechscope.autoencoders import SAEConfig, SparseAutoencoder, load_sae, save_saelens_sae
from tests.support.hub_server import HubServer


def test_fetch_saelens_sae_by_name_then_from_cache(tmp_path):
    gen = torch.Generator().manual_seed(0)
    cfg = SAEConfig(d_in=32, n_latents=96, activation="relu", hook_point="blocks.1.hook_resid_pre")
    sae = SparseAutoencoder.from_tensors(cfg, {
        "W_enc": torch.randn(32, 96, generator=gen), "b_enc": torch.randn(96, generator=gen),
        "W_dec": torch.randn(96, 32, generator=gen), "b_dec": torch.randn(32, generator=gen)})
    folder = save_saelens_sae(sae, tmp_path / "written" / "blocks.1.hook_resid_pre")
    files = {f"blocks.1.hook_resid_pre/{p.name}": p.read_bytes() for p in folder.iterdir()}
    x = torch.randn(5, 32, generator=gen)
    with HubServer({"someone/tiny-saes": files}) as hub:
        spec = "saelens:someone/tiny-saes/blocks.1.hook_resid_pre"
        fetched = load_sae(spec, cache_dir=tmp_path / "cache", hub_endpoint=hub.url, progress=False)
        assert torch.equal(fetched.encode(x), sae.encode(x))
        assert fetched.config.hook_point == "blocks.1.hook_resid_pre"
        seen = len(hub.requests)
        again = load_sae(spec, cache_dir=tmp_path / "cache", hub_endpoint=hub.url, progress=False)
        assert len(hub.requests) == seen  # served from the cache
        assert torch.equal(again.decode(again.encode(x)), sae.decode(sae.encode(x)))
