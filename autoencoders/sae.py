"""The :class:`SparseAutoencoder` module: one implementation for every supported SAE kind.

Weights are stored in one convention whatever the file format:
``W_enc [d_in, n_latents]``, ``b_enc [n_latents]``, ``W_dec [n_latents, d_in]``, ``b_dec [d_in]``
and, for JumpReLU/BatchTopK, ``threshold [n_latents]``. OpenAI's ``pre_bias`` is ``b_dec`` (always
subtracted from inputs) and its ``latent_bias`` is ``b_enc``.

Computation (x of shape ``[..., d_in]``)::

    x_n  = normalize(x)                      # per config.input_normalization
    pre  = (x_n - b_dec * apply_b_dec_to_input) @ W_enc + b_enc        # encode_pre
    a    = activation(pre)                                              # encode
    recon = denormalize(a @ W_dec + b_dec)                              # decode
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from mechscope.inference.errors import InvalidInputError, ShapeMismatchError

from .config import SAEConfig
from .errors import SAEFormatError
from .tensor_checks import check_keys, check_tensor

LAYER_NORM_EPS = 1e-5
PER_EXAMPLE_NORMALIZATIONS = ("layer_norm", "constant_norm_rescale")


@dataclass(frozen=True)
class InputNorm:
    """What maps a decoded output back to the input space: ``y * scale + shift``.

    Tensors have the input's leading shape with a trailing 1 (``[..., 1]``) for per-example
    normalisations; ``None`` means 1 (scale) or 0 (shift).
    """

    scale: torch.Tensor | float | None = None
    shift: torch.Tensor | None = None

    def apply(self, y: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            y = y * self.scale
        if self.shift is not None:
            y = y + self.shift
        return y


class SAEOutput(NamedTuple):
    pre_activations: torch.Tensor
    latents: torch.Tensor
    reconstruction: torch.Tensor


def weight_shapes(config: SAEConfig) -> dict[str, tuple[int, ...]]:
    """The tensors (names and shapes, in mechscope's convention) an SAE of ``config`` holds."""
    shapes = {
        "W_enc": (config.d_in, config.n_latents),
        "b_enc": (config.n_latents,),
        "W_dec": (config.n_latents, config.d_in),
        "b_dec": (config.d_in,),
    }
    if config.has_threshold:
        shapes["threshold"] = (config.n_latents,)
    return shapes


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder (ReLU, TopK, JumpReLU, BatchTopK-at-inference or identity activation)."""

    threshold: torch.Tensor | None

    def __init__(self, config: SAEConfig, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        self.config = config
        n, d = config.n_latents, config.d_in
        self.W_enc = nn.Parameter(torch.zeros(d, n, dtype=dtype, device=device))
        self.b_enc = nn.Parameter(torch.zeros(n, dtype=dtype, device=device))
        self.W_dec = nn.Parameter(torch.zeros(n, d, dtype=dtype, device=device))
        self.b_dec = nn.Parameter(torch.zeros(d, dtype=dtype, device=device))
        if config.has_threshold:
            self.threshold = nn.Parameter(torch.zeros(n, dtype=dtype, device=device))
        else:
            self.threshold = None
        self.statistics: dict[str, torch.Tensor] = {}
        """Optional per-latent statistics from the file (activation frequency, mean square, ...)."""

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_tensors(
        cls,
        config: SAEConfig,
        tensors: Mapping[str, torch.Tensor],
        statistics: Mapping[str, torch.Tensor] | None = None,
        origin: str = "SAE weights",
        dtype: torch.dtype | None = None,
    ) -> "SparseAutoencoder":
        """Build an SAE from tensors in mechscope's convention; every key and shape is checked.

        ``dtype`` defaults to the dtype of ``W_enc``.
        """
        shapes = weight_shapes(config)
        hint = ""
        if "threshold" in tensors and not config.has_threshold:
            hint = f"'threshold' is only used by jumprelu/batchtopk SAEs, but the activation is {config.activation!r}"
        check_keys(tensors.keys(), shapes.keys(), origin, hint=hint)
        for name, shape in shapes.items():
            check_tensor(tensors[name], name, shape, origin)
        sae = cls(config, dtype=dtype or tensors["W_enc"].dtype, device=tensors["W_enc"].device)
        with torch.no_grad():
            for name in shapes:
                getattr(sae, name).copy_(tensors[name])
        for name, value in (statistics or {}).items():
            if not isinstance(value, torch.Tensor) or value.shape[:1] != (config.n_latents,):
                shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise SAEFormatError(
                    f"{origin}: statistic {name!r} has shape {shape}, expected [{config.n_latents}]"
                )
            sae.statistics[name] = value.detach().clone()
        return sae

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights in mechscope's convention (detached, same storage)."""
        return {name: getattr(self, name).detach() for name in weight_shapes(self.config)}

    @property
    def d_in(self) -> int:
        return self.config.d_in

    @property
    def n_latents(self) -> int:
        return self.config.n_latents

    # ----------------------------------------------------------------------------- normalisation
    def input_norm(self, x: torch.Tensor) -> InputNorm:
        """The de-normalisation that :meth:`decode` needs for inputs ``x`` ([..., d_in])."""
        return self._normalize(self._check_input(x))[1]

    def _normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, InputNorm]:
        mode = self.config.input_normalization
        if mode == "none":
            return x, InputNorm()
        if mode == "layer_norm":
            mean = x.mean(dim=-1, keepdim=True)
            centred = x - mean
            std = centred.std(dim=-1, keepdim=True)
            return centred / (std + LAYER_NORM_EPS), InputNorm(scale=std, shift=mean)
        if mode == "constant_norm_rescale":
            coeff = math.sqrt(self.config.d_in) / x.norm(dim=-1, keepdim=True)
            return x * coeff, InputNorm(scale=1.0 / coeff)
        if mode == "expected_average_only_in":
            factor = float(self.config.norm_scaling_factor)  # type: ignore[arg-type]
            return x * factor, InputNorm(scale=1.0 / factor)
        raise AssertionError(mode)  # SAEConfig validates the mode

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InvalidInputError(f"SAE input must be a tensor, got {type(x).__name__}", field="x")
        if x.dim() == 0 or x.shape[-1] != self.config.d_in:
            raise ShapeMismatchError(
                f"SAE input has shape {list(x.shape)}; its last dimension must be d_in={self.config.d_in}",
                field="x",
            )
        if x.dtype != self.W_enc.dtype:
            x = x.to(self.W_enc.dtype)
        return x

    # ----------------------------------------------------------------------------- encoding
    def _pre_2d(self, x: torch.Tensor) -> tuple[torch.Tensor, InputNorm, torch.Size]:
        x = self._check_input(x)
        lead = x.shape[:-1]
        x, norm = self._normalize(x)
        x2 = x.reshape(-1, self.config.d_in)
        if self.config.apply_b_dec_to_input:
            x2 = x2 - self.b_dec
        return torch.addmm(self.b_enc, x2, self.W_enc), norm, lead

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``[..., n_latents]``: the values the activation thresholds/selects."""
        pre, _, lead = self._pre_2d(x)
        return pre.reshape(*lead, self.config.n_latents)

    def activate(self, pre: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Apply the activation to pre-activations ``[..., n_latents]`` (optionally in place)."""
        if inplace and torch.is_grad_enabled() and pre.requires_grad:
            inplace = False
        kind = self.config.activation
        if kind == "relu":
            return pre.relu_() if inplace else pre.relu()
        if kind == "identity":
            return pre
        if kind == "topk":
            values, indices = pre.topk(self.config.k, dim=-1)  # type: ignore[arg-type]
            if self.config.topk_postact == "relu":
                values = values.relu()
            out = pre.zero_() if inplace else torch.zeros_like(pre)
            return out.scatter_(-1, indices, values)
        # jumprelu, batchtopk (inference): relu(pre) where pre > threshold, else 0
        keep = pre > self.threshold
        if inplace:
            return pre.relu_().mul_(keep)
        return pre.relu() * keep

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``[..., n_latents]`` of inputs ``[..., d_in]``."""
        pre, _, lead = self._pre_2d(x)
        return self.activate(pre, inplace=True).reshape(*lead, self.config.n_latents)

    # ----------------------------------------------------------------------------- decoding
    def _denormalizer(self, input_norm: InputNorm | None) -> InputNorm:
        if input_norm is not None:
            return input_norm
        if self.config.input_normalization in PER_EXAMPLE_NORMALIZATIONS:
            raise InvalidInputError(
                f"this SAE normalises each input ({self.config.input_normalization}); pass "
                "input_norm=sae.input_norm(x) to decode or decoder_contribution",
                field="input_norm",
            )
        if self.config.input_normalization == "expected_average_only_in":
            return InputNorm(scale=1.0 / float(self.config.norm_scaling_factor))  # type: ignore[arg-type]
        return InputNorm()

    def decode(self, latents: torch.Tensor, input_norm: InputNorm | None = None) -> torch.Tensor:
        """Reconstruction ``[..., d_in]`` in the input space (de-normalised) of latents ``[..., n_latents]``.

        Per-example normalisations (layer_norm, constant_norm_rescale) need ``input_norm``, from
        :meth:`input_norm` of the original inputs.
        """
        if not isinstance(latents, torch.Tensor) or latents.dim() == 0 or latents.shape[-1] != self.config.n_latents:
            shape = list(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ShapeMismatchError(
                f"latents have shape {shape}; the last dimension must be n_latents={self.config.n_latents}",
                field="latents",
            )
        norm = self._denormalizer(input_norm)
        lead = latents.shape[:-1]
        lat2 = latents.reshape(-1, self.config.n_latents).to(self.W_dec.dtype)
        y = torch.addmm(self.b_dec, lat2, self.W_dec).reshape(*lead, self.config.d_in)
        return norm.apply(y)

    def decoder_contribution(
        self, latent_index: int, value: torch.Tensor | float, input_norm: InputNorm | None = None
    ) -> torch.Tensor:
        """What latent ``latent_index`` at activation ``value`` adds to the reconstruction.

        ``value`` may be a float or a tensor of any shape ``S``; the result has shape ``S + [d_in]``.
        Biases are not included (they do not depend on the latent). With per-example normalisation
        the contribution is scaled back to the input space with ``input_norm`` (shape ``S + [1]``).
        """
        n = self.config.n_latents
        if isinstance(latent_index, bool) or not isinstance(latent_index, int) or not 0 <= latent_index < n:
            raise InvalidInputError(
                f"latent_index must be an integer in [0, {n}), got {latent_index!r}", field="latent_index"
            )
        norm = self._denormalizer(input_norm)
        value = torch.as_tensor(value, dtype=self.W_dec.dtype, device=self.W_dec.device)
        out = value.unsqueeze(-1) * self.W_dec[latent_index]
        return out * norm.scale if norm.scale is not None else out

    # ----------------------------------------------------------------------------- full pass
    def run(self, x: torch.Tensor) -> SAEOutput:
        """Pre-activations, latents and reconstruction of ``x`` in one pass."""
        pre, norm, lead = self._pre_2d(x)
        latents = self.activate(pre, inplace=False)
        recon = torch.addmm(self.b_dec, latents, self.W_dec).reshape(*lead, self.config.d_in)
        return SAEOutput(
            pre.reshape(*lead, self.config.n_latents),
            latents.reshape(*lead, self.config.n_latents),
            norm.apply(recon),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` ([..., d_in] -> [..., d_in])."""
        pre, norm, lead = self._pre_2d(x)
        latents = self.activate(pre, inplace=True)
        return norm.apply(torch.addmm(self.b_dec, latents, self.W_dec).reshape(*lead, self.config.d_in))

    def extra_repr(self) -> str:
        c = self.config
        extra = f", k={c.k}" if c.activation == "topk" else ""
        return (
            f"d_in={c.d_in}, n_latents={c.n_latents}, activation={c.activation}{extra}, "
            f"hook_point={c.hook_point}, input_normalization={c.input_normalization}"
        )
