import pytest
import torch

from mechscope.activation_server.engine.engine import Engine
from mechscope.autoencoders import SAEConfig, SparseAutoencoder

IOI = "When Mary and John went to the store, John gave a drink to"


def random_sae(d_in: int, n: int, hook_point: str, seed: int = 0, activation: str = "relu", k=None) -> SparseAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    cfg = SAEConfig(d_in=d_in, n_latents=n, activation=activation, k=k, hook_point=hook_point)
    return SparseAutoencoder.from_tensors(cfg, {
        "W_enc": torch.randn(d_in, n, generator=gen) / d_in ** 0.5, "b_enc": torch.randn(n, generator=gen) * 0.1,
        "W_dec": torch.randn(n, d_in, generator=gen) / n ** 0.5, "b_dec": torch.randn(d_in, generator=gen) * 0.1})


@pytest.fixture(scope="session")
def engine(small_model):
    """Engine on the small random model (3 layers, 4 heads, d_model 64) with an MLP SAE and an
    attention SAE in every layer."""
    saes = []
    for layer in range(small_model.cfg.n_layers):
        saes.append(random_sae(64, 128, f"blocks.{layer}.hook_mlp_out", seed=layer))
        saes.append(random_sae(64, 96, f"blocks.{layer}.hook_attn_out", seed=10 + layer, activation="topk", k=12))
    ref = torch.randint(0, 50257, (8, 32), generator=torch.Generator().manual_seed(0))
    return Engine(small_model, saes, reference_tokens=ref)
