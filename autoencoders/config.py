"""What an SAE is and how it expects to be used: :class:`SAEConfig` and :class:`WeightProcessing`.

The config is plain data (JSON-able through :meth:`SAEConfig.to_dict`), recorded next to the weights
in mechscope's own format and rebuilt from the metadata of the public formats by their loaders.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from mechscope.inference.errors import InvalidInputError

ACTIVATIONS = ("relu", "topk", "jumprelu", "batchtopk", "identity")
"""Activation kinds. ``batchtopk`` runs at inference as JumpReLU with its stored threshold."""

TOPK_POSTACTS = ("relu", "identity")
"""What TopK applies to the k kept pre-activations (OpenAI's ``postact_fn``; SAELens uses ReLU)."""

INPUT_NORMALIZATIONS = ("none", "layer_norm", "expected_average_only_in", "constant_norm_rescale")
"""How inputs are normalised before encoding (outputs are de-normalised after decoding).

- ``none``
- ``layer_norm``: per example, ``(x - mean) / (std + 1e-5)`` with the unbiased std; decoding maps
  ``y -> y * std + mean`` (OpenAI v5 and SAELens ``layer_norm``).
- ``expected_average_only_in``: ``x * norm_scaling_factor``; decoding divides by it (what SAELens
  obtains by folding the factor into the weights).
- ``constant_norm_rescale``: per example ``x * sqrt(d_in) / ||x||``; decoding divides by the same.
"""


@dataclass(frozen=True)
class WeightProcessing:
    """Weight processing applied to a model (or expected of it by an SAE).

    ``center_writing_weights``: every weight that writes to the residual stream has had its mean over
    d_model removed (TransformerLens' default), which changes residual-stream activations.
    ``fold_ln``: LayerNorm scales/biases folded into the following weights, which changes the values
    at ``*.hook_normalized``. ``None`` (only meaningful for an SAE's expectation) means unknown.
    """

    center_writing_weights: bool | None = False
    fold_ln: bool | None = False

    @classmethod
    def coerce(cls, value: "WeightProcessing | Mapping[str, Any] | None") -> "WeightProcessing":
        """Accept a WeightProcessing, a dict with (a subset of) its fields, or None (= defaults)."""
        if value is None:
            return cls()
        if isinstance(value, WeightProcessing):
            return value
        if isinstance(value, Mapping):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - names)
            if unknown:
                raise InvalidInputError(
                    f"unknown weight-processing option(s) {unknown}; known: {sorted(names)}",
                    field="weight_processing",
                )
            for key, flag in value.items():
                if flag is not None and not isinstance(flag, bool):
                    raise InvalidInputError(
                        f"weight-processing option {key!r} must be true/false/null, got {flag!r}",
                        field="weight_processing",
                    )
            return cls(**value)
        raise InvalidInputError(
            f"weight_processing must be a WeightProcessing or a dict, got {type(value).__name__}",
            field="weight_processing",
        )

    def to_dict(self) -> dict[str, bool | None]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SAEConfig:
    """Hyper-parameters and provenance of one sparse autoencoder.

    ``expected_weight_processing`` is the weight processing of the model the SAE was trained on;
    :func:`mechscope.autoencoders.check_compatible` compares it with the model's. ``source`` records
    where the SAE came from (format, file, version, original metadata...) and must be JSON-able.
    """

    d_in: int
    n_latents: int
    activation: str = "relu"
    k: int | None = None
    topk_postact: str = "relu"
    hook_point: str | None = None
    model_name: str | None = None
    input_normalization: str = "none"
    norm_scaling_factor: float | None = None
    apply_b_dec_to_input: bool = True
    expected_weight_processing: WeightProcessing = field(default_factory=WeightProcessing)
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("d_in", "n_latents"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}", field=name)
        if self.activation not in ACTIVATIONS:
            raise InvalidInputError(
                f"unknown activation {self.activation!r}; known: {list(ACTIVATIONS)}", field="activation"
            )
        if self.activation == "topk":
            if isinstance(self.k, bool) or not isinstance(self.k, int) or not 0 < self.k <= self.n_latents:
                raise InvalidInputError(
                    f"topk activation needs an integer k in [1, n_latents={self.n_latents}], got k={self.k!r}",
                    field="k",
                )
        if self.topk_postact not in TOPK_POSTACTS:
            raise InvalidInputError(
                f"unknown topk_postact {self.topk_postact!r}; known: {list(TOPK_POSTACTS)}",
                field="topk_postact",
            )
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise InvalidInputError(
                f"unknown input_normalization {self.input_normalization!r}; known: {list(INPUT_NORMALIZATIONS)}",
                field="input_normalization",
            )
        if self.input_normalization == "expected_average_only_in":
            factor = self.norm_scaling_factor
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not math.isfinite(factor) or factor <= 0:
                raise InvalidInputError(
                    "input_normalization 'expected_average_only_in' needs a positive finite "
                    f"norm_scaling_factor, got {factor!r}",
                    field="norm_scaling_factor",
                )
        elif self.norm_scaling_factor is not None:
            raise InvalidInputError(
                f"norm_scaling_factor={self.norm_scaling_factor!r} is only meaningful with "
                f"input_normalization 'expected_average_only_in', not {self.input_normalization!r}",
                field="norm_scaling_factor",
            )
        if not isinstance(self.apply_b_dec_to_input, bool):
            raise InvalidInputError(
                f"apply_b_dec_to_input must be a bool, got {self.apply_b_dec_to_input!r}",
                field="apply_b_dec_to_input",
            )
        if not isinstance(self.expected_weight_processing, WeightProcessing):
            object.__setattr__(
                self, "expected_weight_processing", WeightProcessing.coerce(self.expected_weight_processing)
            )

    @property
    def has_threshold(self) -> bool:
        """Whether the SAE carries a per-latent ``threshold`` (JumpReLU and BatchTopK)."""
        return self.activation in ("jumprelu", "batchtopk")

    def replace(self, **changes: Any) -> "SAEConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["expected_weight_processing"] = self.expected_weight_processing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SAEConfig":
        """Inverse of :meth:`to_dict`. Unknown or missing keys raise InvalidInputError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInputError(f"unknown SAE config key(s) {unknown}; known: {sorted(names)}", field="config")
        missing = sorted(n for n in ("d_in", "n_latents") if n not in data)
        if missing:
            raise InvalidInputError(f"SAE config lacks required key(s) {missing}", field="config")
        values = dict(data)
        values["expected_weight_processing"] = WeightProcessing.coerce(values.get("expected_weight_processing"))
        values["source"] = dict(values.get("source") or {})
        return cls(**values)
