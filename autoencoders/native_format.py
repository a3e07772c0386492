"""mechscope's own SAE format: a directory with ``sae.json`` (the SAEConfig) and ``sae.safetensors``.

``sae.json``: ``{"format": "mechscope-sae", "format_version": 1, "config": {...},
"statistics": [names]}``. ``sae.safetensors``: ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``
(``threshold`` for jumprelu/batchtopk) in mechscope's convention, and ``statistics.<name>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mechscope.inference.errors import InvalidInputError

from .config import SAEConfig
from .errors import SAEFormatError
from .sae import SparseAutoencoder, weight_shapes
from .tensor_checks import check_keys

FORMAT_NAME = "mechscope-sae"
FORMAT_VERSION = 1
CONFIG_FILENAME = "sae.json"
WEIGHTS_FILENAME = "sae.safetensors"
STATISTIC_PREFIX = "statistics."


def load_native_sae(directory: str | Path, dtype: torch.dtype | None = None) -> SparseAutoencoder:
    directory = Path(directory)
    meta_path, weights_path = directory / CONFIG_FILENAME, directory / WEIGHTS_FILENAME
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise SAEFormatError(f"{directory}: no {path.name} (a mechscope SAE directory holds {CONFIG_FILENAME} and {WEIGHTS_FILENAME})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SAEFormatError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise SAEFormatError(f"{meta_path}: expected a JSON object")
    check_keys(meta.keys(), ("format", "format_version", "config"), str(meta_path), optional=("statistics",))
    if meta["format"] != FORMAT_NAME:
        raise SAEFormatError(f"{meta_path}: format is {meta['format']!r}, expected {FORMAT_NAME!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise SAEFormatError(
            f"{meta_path}: format_version {meta['format_version']!r} is not supported (this mechscope reads {FORMAT_VERSION})"
        )
    try:
        config = SAEConfig.from_dict(meta["config"])
    except (InvalidInputError, TypeError) as err:
        raise SAEFormatError(f"{meta_path}: invalid config: {err}") from None
    stat_names = meta.get("statistics", [])
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except Exception as err:  # noqa: BLE001
        raise SAEFormatError(f"{weights_path}: not a readable safetensors file ({err})") from err
    check_keys(
        tensors.keys(),
        list(weight_shapes(config)) + [STATISTIC_PREFIX + name for name in stat_names],
        str(weights_path),
    )
    statistics = {name: tensors.pop(STATISTIC_PREFIX + name) for name in stat_names}
    return SparseAutoencoder.from_tensors(config, tensors, statistics, origin=str(weights_path), dtype=dtype)


def save_native_sae(sae: SparseAutoencoder, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous().clone() for name, t in sae.tensors().items()}
    for name, value in sae.statistics.items():
        tensors[STATISTIC_PREFIX + name] = value.contiguous()
    save_file(tensors, str(directory / WEIGHTS_FILENAME))
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": sae.config.to_dict(),
        "statistics": sorted(sae.statistics),
    }
    (directory / CONFIG_FILENAME).write_text(json.dumps(meta, indent=2))
    return directory
