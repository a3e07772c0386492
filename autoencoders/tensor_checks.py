"""Strict checks of the tensors a checkpoint holds: every key accounted for, every shape exact."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .errors import SAEFormatError


def check_keys(
    found: Iterable[str],
    required: Iterable[str],
    origin: str,
    optional: Iterable[str] = (),
    hint: str = "",
) -> None:
    """Raise SAEFormatError naming missing and unknown keys of ``found`` (nothing is ever ignored)."""
    found_set, required_set = set(found), set(required)
    missing = sorted(required_set - found_set)
    unknown = sorted(found_set - required_set - set(optional))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing key(s) {missing}")
        if unknown:
            parts.append(f"unknown key(s) {unknown}")
        expected = sorted(required_set)
        raise SAEFormatError(
            f"{origin}: {' and '.join(parts)}; expected exactly {expected}"
            + (f" plus optional {sorted(set(optional))}" if optional else "")
            + (f". {hint}" if hint else "")
        )


def check_tensor(value: Any, name: str, shape: tuple[int, ...], origin: str) -> torch.Tensor:
    """Return ``value`` if it is a floating tensor of exactly ``shape``, else raise SAEFormatError."""
    if not isinstance(value, torch.Tensor):
        raise SAEFormatError(f"{origin}: {name!r} should be a tensor of shape {list(shape)}, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise SAEFormatError(
            f"{origin}: {name!r} has shape {list(value.shape)}, expected {list(shape)}"
        )
    if not value.is_floating_point():
        raise SAEFormatError(f"{origin}: {name!r} has dtype {value.dtype}, expected a floating-point tensor")
    return value


def check_shapes(tensors: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], origin: str) -> None:
    for name, shape in shapes.items():
        if name in tensors:
            check_tensor(tensors[name], name, shape, origin)
