"""The SAEs shipped with the model organism: one TopK SAE per layer on ``hook_attn_out`` and on
``hook_mlp_out``, stored in mechscope's format under ``organism/<hook point>/`` (see
``organism/SAE_CARD.md``; trained by ``scripts/train_saes.py``)."""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.inference.errors import CheckpointError

from .hook_points import parse_hook_point
from .native_format import CONFIG_FILENAME, load_native_sae
from .sae import SparseAutoencoder

ORGANISM_SAE_DIR = Path(__file__).parent / "organism"
ORGANISM_SAE_SUFFIXES = ("hook_attn_out", "hook_mlp_out")
"""Where the shipped SAEs read, inside every block, in forward order."""


def organism_sae_hook_points(n_layer: int) -> list[str]:
    """Hook points of the shipped SAEs for an organism with ``n_layer`` blocks, in forward order."""
    return [f"blocks.{layer}.{suffix}" for layer in range(n_layer) for suffix in ORGANISM_SAE_SUFFIXES]


def _forward_order(hook_point: str) -> tuple[int, int]:
    point = parse_hook_point(hook_point)
    return (point.layer if point.layer is not None else -1, ORGANISM_SAE_SUFFIXES.index(point.suffix))


def load_organism_saes(directory: str | Path = ORGANISM_SAE_DIR,
                       dtype: torch.dtype | None = None) -> list[SparseAutoencoder]:
    """Every SAE shipped for the organism, in forward order (layer 0 attention, layer 0 MLP, ...)."""
    directory = Path(directory)
    found = sorted(p.parent.name for p in directory.glob(f"*/{CONFIG_FILENAME}")) if directory.is_dir() else []
    unexpected = [name for name in found if parse_hook_point(name).suffix not in ORGANISM_SAE_SUFFIXES]
    if unexpected:
        raise CheckpointError(f"{directory}: unexpected SAE folder(s) {unexpected}; "
                              f"expected blocks.L.{{{','.join(ORGANISM_SAE_SUFFIXES)}}}")
    if not found:
        raise CheckpointError(f"the organism's SAEs are missing from {directory}; train them with scripts/train_saes.py")
    saes = []
    for name in sorted(found, key=_forward_order):
        sae = load_native_sae(directory / name, dtype=dtype)
        if sae.config.hook_point != name:
            raise CheckpointError(f"{directory / name}: the SAE's config names hook point {sae.config.hook_point!r}, "
                                  f"not its folder's {name!r}")
        saes.append(sae)
    return saes
