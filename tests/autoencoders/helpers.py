"""Random SAEs and an independent NumPy reference of the public SAE formulas."""

from __future__ import annotations

import numpy as np
import torch

from mechscope.autoencoders import SAEConfig, SparseAutoencoder

D_IN = 64
N_LATENTS = 256


def random_tensors(d_in: int = D_IN, n: int = N_LATENTS, seed: int = 0, threshold: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "W_enc": torch.randn(d_in, n, generator=gen) / d_in**0.5,
        "b_enc": torch.randn(n, generator=gen) * 0.1,
        "W_dec": torch.randn(n, d_in, generator=gen) / n**0.5,
        "b_dec": torch.randn(d_in, generator=gen) * 0.1,
    }
    if threshold:
        tensors["threshold"] = torch.rand(n, generator=gen) * 0.3
    return tensors


def random_sae(seed: int = 0, **config: object) -> SparseAutoencoder:
    cfg = SAEConfig(d_in=config.pop("d_in", D_IN), n_latents=config.pop("n_latents", N_LATENTS), **config)  # type: ignore[arg-type]
    tensors = random_tensors(cfg.d_in, cfg.n_latents, seed, threshold=cfg.has_threshold)
    return SparseAutoencoder.from_tensors(cfg, tensors)


def random_inputs(*shape: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen) * 2.0 + 0.5


class Reference:
    """Straightforward float64 NumPy implementation, written from the formats' descriptions."""

    def __init__(self, tensors: dict[str, torch.Tensor], activation: str, k: int | None = None,
                 normalization: str = "none", factor: float | None = None, apply_b_dec: bool = True,
                 postact: str = "relu", decoder_scale: np.ndarray | None = None):
        self.t = {name: value.double().numpy() for name, value in tensors.items()}
        self.activation, self.k, self.normalization = activation, k, normalization
        self.factor, self.apply_b_dec, self.postact = factor, apply_b_dec, postact
        self.decoder_scale = decoder_scale

    def _normalise(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        d = x.shape[-1]
        if self.normalization == "layer_norm":
            mean = x.mean(-1, keepdims=True)
            std = np.sqrt(((x - mean) ** 2).sum(-1, keepdims=True) / (d - 1))
            return (x - mean) / (std + 1e-5), lambda y: y * std + mean
        if self.normalization == "constant_norm_rescale":
            coeff = np.sqrt(d) / np.linalg.norm(x, axis=-1, keepdims=True)
            return x * coeff, lambda y: y / coeff
        if self.normalization == "expected_average_only_in":
            return x * self.factor, lambda y: y / self.factor
        return x, lambda y: y

    def pre(self, x: np.ndarray) -> np.ndarray:
        xn, _ = self._normalise(x.astype(np.float64))
        if self.apply_b_dec:
            xn = xn - self.t["b_dec"]
        return xn @ self.t["W_enc"] + self.t["b_enc"]

    def latents(self, x: np.ndarray) -> np.ndarray:
        pre = self.pre(x)
        if self.activation == "relu":
            return np.maximum(pre, 0)
        if self.activation == "identity":
            return pre
        if self.activation == "topk":
            out = np.zeros_like(pre)
            flat_pre, flat_out = pre.reshape(-1, pre.shape[-1]), out.reshape(-1, pre.shape[-1])
            for row in range(flat_pre.shape[0]):
                top = np.argsort(-flat_pre[row])[: self.k]
                values = flat_pre[row, top]
                flat_out[row, top] = np.maximum(values, 0) if self.postact == "relu" else values
            return out
        # jumprelu / batchtopk at inference
        return np.where(pre > self.t["threshold"], np.maximum(pre, 0), 0.0)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        _, denorm = self._normalise(x.astype(np.float64))
        a = self.latents(x)
        if self.decoder_scale is not None:
            a = a * self.decoder_scale
        return denorm(a @ self.t["W_dec"] + self.t["b_dec"])
