"""OpenAI ``sparse_autoencoder`` checkpoints (the ``.pt`` files TDB uses).

A weights-only ``torch.save`` of a dict: ``pre_bias [d_in]``, ``encoder.weight [n, d_in]``,
``latent_bias [n]``, ``decoder.weight [d_in, n]``, buffers ``stats_last_nonzero``,
``latents_activation_frequency``, ``latents_mean_square`` (``[n]``), optional ``activation``
("ReLU" | "TopK" | "Identity", default "ReLU") and ``activation_state_dict`` (TopK: ``k``,
``postact_fn``). As in OpenAI's loader, inputs are layer-normalised exactly when the activation
is TopK (v5 files).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mechscope.inference.errors import InvalidInputError

from .config import SAEConfig, WeightProcessing
from .errors import SAEFormatError
from .hook_points import OPENAI_LOCATIONS, openai_hook_point
from .sae import SparseAutoencoder
from .tensor_checks import check_keys, check_tensor

WEIGHT_KEYS = ("pre_bias", "encoder.weight", "latent_bias", "decoder.weight")
STATISTIC_KEYS = ("stats_last_nonzero", "latents_activation_frequency", "latents_mean_square")
ACTIVATION_KEYS = ("activation", "activation_state_dict")
ACTIVATION_NAMES = {"ReLU": "relu", "TopK": "topk", "Identity": "identity"}
POSTACT_NAMES = {"ReLU": "relu", "Identity": "identity"}

OPENAI_VERSIONS = ("", "_v4", "_v5_32k", "_v5_128k")
"""Blob folder suffixes: v1 (no suffix), v4, v5 with 32k and 128k latents."""

OPENAI_VERSION_LOCATIONS = {
    "": ("mlp_post_act", "resid_delta_mlp"),
    "_v4": ("mlp_post_act", "resid_delta_mlp", "resid_delta_attn"),
    "_v5_32k": ("resid_delta_attn", "resid_delta_mlp", "resid_post_attn", "resid_post_mlp"),
    "_v5_128k": ("resid_delta_attn", "resid_delta_mlp", "resid_post_attn", "resid_post_mlp"),
}

# "<location><version>/autoencoders/<layer>.pt" at the end of a path or blob name.
_PATH_RE = re.compile(
    r"(?P<location>" + "|".join(OPENAI_LOCATIONS) + r")(?P<version>_v4|_v5_32k|_v5_128k)?"
    r"/autoencoders/(?P<layer>\d+)\.pt$"
)


def location_from_path(path: str | Path) -> tuple[str, str, int] | None:
    """(location, version suffix, layer) when ``path`` ends like OpenAI's blob layout, else None."""
    match = _PATH_RE.search(Path(path).as_posix())
    if not match:
        return None
    return match.group("location"), match.group("version") or "", int(match.group("layer"))


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise SAEFormatError(f"{path}: no such file")
    try:
        # weights_only refuses any pickle that would import or call code.
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - every failure is a format problem of this file
        raise SAEFormatError(
            f"{path}: not a weights-only torch checkpoint (refused to unpickle: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from err


def _activation(state: Mapping[str, Any], origin: str) -> tuple[str, int | None, str]:
    name = state.get("activation", "ReLU")
    if name not in ACTIVATION_NAMES:
        raise SAEFormatError(
            f"{origin}: unknown activation {name!r}; known: {sorted(ACTIVATION_NAMES)}"
        )
    act_state = state.get("activation_state_dict", {})
    if not isinstance(act_state, Mapping):
        raise SAEFormatError(f"{origin}: 'activation_state_dict' should be a dict, got {type(act_state).__name__}")
    if name != "TopK":
        check_keys(act_state.keys(), (), f"{origin}: activation_state_dict of {name}")
        return ACTIVATION_NAMES[name], None, "relu"
    if "k" not in act_state:
        raise SAEFormatError(
            f"{origin}: activation is TopK but activation_state_dict has no 'k' "
            f"(keys: {sorted(act_state)})"
        )
    check_keys(act_state.keys(), ("k",), f"{origin}: activation_state_dict of TopK", optional=("postact_fn",))
    k = act_state["k"]
    if isinstance(k, torch.Tensor) and k.numel() == 1:
        k = k.item()
    if isinstance(k, bool) or not isinstance(k, int):
        raise SAEFormatError(f"{origin}: TopK 'k' must be an integer, got {k!r}")
    postact = act_state.get("postact_fn", "ReLU")
    if postact not in POSTACT_NAMES:
        raise SAEFormatError(f"{origin}: unknown TopK postact_fn {postact!r}; known: {sorted(POSTACT_NAMES)}")
    return "topk", k, POSTACT_NAMES[postact]


def load_openai_sae(
    path: str | Path,
    hook_point: str | None = None,
    dtype: torch.dtype | None = None,
    model_name: str | None = None,
    source: Mapping[str, Any] | None = None,
) -> SparseAutoencoder:
    """Load an OpenAI sparse_autoencoder ``.pt`` file.

    ``hook_point`` defaults to the one implied by a path ending in OpenAI's layout
    (``<location><version>/autoencoders/<layer>.pt``), else None.
    """
    path = Path(path)
    origin = str(path)
    state = _load_pickle(path)
    if not isinstance(state, Mapping):
        raise SAEFormatError(f"{origin}: expected a state dict, got {type(state).__name__}")
    check_keys(state.keys(), WEIGHT_KEYS, origin, optional=STATISTIC_KEYS + ACTIVATION_KEYS)

    encoder = state["encoder.weight"]
    if not isinstance(encoder, torch.Tensor) or encoder.dim() != 2:
        shape = list(encoder.shape) if isinstance(encoder, torch.Tensor) else type(encoder).__name__
        raise SAEFormatError(f"{origin}: 'encoder.weight' should be a [n_latents, d_in] tensor, got {shape}")
    n_latents, d_in = encoder.shape
    check_tensor(encoder, "encoder.weight", (n_latents, d_in), origin)
    check_tensor(state["decoder.weight"], "decoder.weight", (d_in, n_latents), origin)
    check_tensor(state["pre_bias"], "pre_bias", (d_in,), origin)
    check_tensor(state["latent_bias"], "latent_bias", (n_latents,), origin)

    activation, k, postact = _activation(state, origin)
    inferred = location_from_path(path)
    provenance: dict[str, Any] = {"format": "openai", "path": origin}
    if inferred:
        location, version, layer = inferred
        provenance.update(location=location, version=version or "v1", layer=layer)
        if hook_point is None:
            hook_point = openai_hook_point(location, layer)
    provenance.update(source or {})
    try:
        config = SAEConfig(
            d_in=d_in,
            n_latents=n_latents,
            activation=activation,
            k=k,
            topk_postact=postact,
            hook_point=hook_point,
            model_name=model_name or ("gpt2-small" if inferred else None),
            input_normalization="layer_norm" if activation == "topk" else "none",
            apply_b_dec_to_input=True,
            # OpenAI trained on GPT-2 activations without TransformerLens-style processing.
            expected_weight_processing=WeightProcessing(center_writing_weights=False, fold_ln=False),
            source=provenance,
        )
    except InvalidInputError as err:
        raise SAEFormatError(f"{origin}: {err}") from None
    tensors = {
        "W_enc": encoder.t(),
        "b_enc": state["latent_bias"],
        "W_dec": state["decoder.weight"].t(),
        "b_dec": state["pre_bias"],
    }
    statistics = {key: state[key] for key in STATISTIC_KEYS if key in state}
    return SparseAutoencoder.from_tensors(config, tensors, statistics, origin=origin, dtype=dtype or encoder.dtype)


def openai_state_dict(sae: SparseAutoencoder) -> dict[str, Any]:
    """The SAE as an OpenAI state dict; raises SAEFormatError if the format cannot represent it.

    Only OpenAI's three buffers are kept among ``sae.statistics``.
    """
    c = sae.config
    names = {v: k for k, v in ACTIVATION_NAMES.items()}
    if c.activation not in names:
        raise SAEFormatError(
            f"the OpenAI format cannot hold a {c.activation!r} SAE (only ReLU, TopK, Identity)"
        )
    wanted_norm = "layer_norm" if c.activation == "topk" else "none"
    if c.input_normalization != wanted_norm:
        raise SAEFormatError(
            f"the OpenAI format layer-normalises inputs exactly for TopK SAEs; this {c.activation!r} SAE "
            f"has input_normalization={c.input_normalization!r}"
        )
    if not c.apply_b_dec_to_input:
        raise SAEFormatError("the OpenAI format always subtracts pre_bias (b_dec) from inputs; this SAE has apply_b_dec_to_input=False")
    t = sae.tensors()
    state: dict[str, Any] = {
        "pre_bias": t["b_dec"].clone(),
        "encoder.weight": t["W_enc"].t().contiguous(),
        "latent_bias": t["b_enc"].clone(),
        "decoder.weight": t["W_dec"].t().contiguous(),
    }
    for key in STATISTIC_KEYS:
        if key in sae.statistics:
            state[key] = sae.statistics[key].clone()
    state["activation"] = names[c.activation]
    if c.activation == "topk":
        postact = {v: k for k, v in POSTACT_NAMES.items()}[c.topk_postact]
        state["activation_state_dict"] = {"k": int(c.k), "postact_fn": postact}  # type: ignore[arg-type]
    else:
        state["activation_state_dict"] = {}
    return state


def save_openai_sae(sae: SparseAutoencoder, path: str | Path) -> Path:
    """Write ``sae`` as an OpenAI ``.pt`` file (plain dict of tensors and Python values)."""
    path = Path(path)
    state = openai_state_dict(sae)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
