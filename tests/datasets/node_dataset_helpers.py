"""A small random model, SAEs and corpus for node-dataset tests, and a brute-force reference that
computes every activation of the whole corpus at once (run_with_cache) and sorts it."""

from __future__ import annotations

import numpy as np
import torch

from mechscope.autoencoders import SAEConfig, SAESplice, SparseAutoencoder
from mechscope.datasets.node_dataset.config import BuildConfig
from mechscope.inference import GPT2, GPT2Config

N_CTX = 48
CONFIG = BuildConfig(top_k=5, window=16, window_after=4, random_samples=6, quantile_bins=4, quantile_samples=3,
                     histogram_bins=16, logit_tokens=5, batch_size=8, checkpoint_every=2, seed=7)


def small_model() -> GPT2:
    model = GPT2(GPT2Config(n_layers=2, n_heads=4, d_model=64, n_ctx=64, name="tiny"))
    model.init_weights(seed=11)
    return model.eval().requires_grad_(False)


def random_sae(hook_point: str, d_in: int, n_latents: int, seed: int, bias: float = -0.05) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, n_latents=n_latents, hook_point=hook_point))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, n_latents, generator=g) / d_in ** 0.5)
        sae.W_dec.copy_(torch.randn(n_latents, d_in, generator=g) / d_in ** 0.5)
        sae.b_enc.copy_(torch.randn(n_latents, generator=g) * 0.05 + bias)
    return sae.requires_grad_(False)


def small_saes() -> list[SparseAutoencoder]:
    """One mostly-zero SAE (the builder's sparse path) and one about half active (its dense path)."""
    return [random_sae("blocks.1.mlp.hook_post", 256, 96, seed=3, bias=-0.12),
            random_sae("blocks.0.hook_resid_post", 64, 48, seed=4, bias=0.01)]


def corpus(rows: int = 44, seed: int = 5) -> torch.Tensor:
    """Random token rows; a few repeated spans so that heads have something to attend to."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 2000, (rows, N_CTX), generator=g)
    tokens[:, 30:40] = tokens[:, 5:15]
    tokens[:, 0] = 50256
    return tokens


class BruteForce:
    """Every node's per-token activation over the whole corpus, computed in one go."""

    def __init__(self, model: GPT2, saes, tokens: torch.Tensor):
        splices = [SAESplice(s) for s in saes]
        names = [f"blocks.{L}.{p}" for L in range(model.cfg.n_layers) for p in ("mlp.hook_post", "attn.hook_pattern",
                                                                               "attn.hook_v")]
        names += [f"{s.hook_point}.hook_sae_acts_post" for s in splices]
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names=names, splices=splices)
        self.tokens = tokens.numpy()
        self.acts: dict[tuple, np.ndarray] = {}  # (kind, layer|hook) -> [rows, pos, nodes]
        self.pairs: dict[int, np.ndarray] = {}  # layer -> [rows, head, q, k] write norms
        for L in range(model.cfg.n_layers):
            self.acts[("mlp_neuron", L)] = cache[f"blocks.{L}.mlp.hook_post"].numpy().astype(np.float64)
            pattern = cache[f"blocks.{L}.attn.hook_pattern"].numpy().astype(np.float64)
            v = cache[f"blocks.{L}.attn.hook_v"].numpy().astype(np.float64)
            w_o = model.h[L].attn.W_O.numpy().astype(np.float64)
            norms = np.zeros_like(pattern)
            for h in range(model.cfg.n_heads):  # the write vector of every pair, then its norm
                vo = v[:, :, h, :] @ w_o[h]  # [rows, k, d_model]
                writes = pattern[:, h, :, :, None] * vo[:, None, :, :]
                norms[:, h] = np.linalg.norm(writes, axis=-1)
            self.pairs[L] = norms
            self.acts[("attn_head", L)] = norms.max(-1).transpose(0, 2, 1)
        for s in splices:
            self.acts[("sae_latent", s.hook_point)] = cache[f"{s.hook_point}.hook_sae_acts_post"].numpy().astype(np.float64)

    def node(self, kind: str, key, index: int) -> np.ndarray:
        return self.acts[(kind, key)][:, :, index]

    def top_rows(self, kind: str, key, index: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, row maxima, argmax positions) of the k rows with the largest max; ties: earlier row."""
        a = self.node(kind, key, index)
        rowmax = a.max(1)
        rows = np.argsort(-rowmax, kind="stable")[:k]
        return rows, rowmax[rows], a[rows].argmax(1)


def window_start(pos: int, cfg: BuildConfig = CONFIG, n_ctx: int = N_CTX) -> int:
    return int(min(max(pos - (cfg.window - 1 - cfg.window_after), 0), n_ctx - cfg.window))
