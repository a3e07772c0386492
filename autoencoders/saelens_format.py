"""SAELens checkpoint directories: ``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors``).

Both config generations are read: SAELens >= 6 (``architecture``, ``k``, ``metadata.hook_name`` ...)
and older files (``hook_point``/``hook_name``, ``activation_fn_str``, ``activation_fn_kwargs.k``,
``hook_point_layer``, boolean ``normalize_activations``), with SAELens' own defaults for absent keys
(``apply_b_dec_to_input`` true, ``architecture`` standard).

Weights: ``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``, plus ``threshold``
for jumprelu/batchtopk and, in older files, ``scaling_factor`` (the finetuning scaling factor:
latents are multiplied by it before decoding; it is folded into ``W_dec`` here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mechscope.inference.errors import InvalidInputError

from .config import INPUT_NORMALIZATIONS, SAEConfig, WeightProcessing
from .errors import SAEFormatError
from .sae import SparseAutoencoder
from .tensor_checks import check_keys, check_tensor

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"

ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "batchtopk"}
SCALING_FACTOR_KEYS = ("scaling_factor", "finetuning_scaling_factor")
DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "double": torch.float64,
}
TRANSFORMER_LENS_DEFAULTS = {"center_writing_weights": True, "fold_ln": True}
"""What ``HookedTransformer.from_pretrained`` does unless SAELens' model_from_pretrained_kwargs say otherwise."""


def _read_cfg(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CFG_FILENAME
    if not cfg_path.is_file():
        raise SAEFormatError(f"{directory}: no {CFG_FILENAME} (a SAELens SAE directory holds {CFG_FILENAME} and {WEIGHTS_FILENAME})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SAEFormatError(f"{cfg_path}: not valid JSON ({err})") from err
    if not isinstance(cfg, dict):
        raise SAEFormatError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def _meta(cfg: Mapping[str, Any], key: str, *old_names: str) -> Any:
    """A metadata value from v6 ``metadata``/``meta`` or from the top level (older names too)."""
    for section in ("metadata", "meta"):
        block = cfg.get(section)
        if isinstance(block, Mapping) and block.get(key) is not None:
            return block[key]
    for name in (key, *old_names):
        if cfg.get(name) is not None:
            return cfg[name]
    return None


def _int(value: Any, name: str, origin: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SAEFormatError(f"{origin}: {name!r} must be an integer, got {value!r}")
    return value


def _activation(cfg: Mapping[str, Any], origin: str) -> tuple[str, int | None]:
    architecture = cfg.get("architecture", "standard")
    if architecture not in ARCHITECTURES:
        raise SAEFormatError(
            f"{origin}: unsupported architecture {architecture!r}; supported: {sorted(ARCHITECTURES)}"
        )
    activation = ARCHITECTURES[architecture]
    act_fn = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    if architecture == "standard" and act_fn not in (None, "relu", "topk"):
        raise SAEFormatError(f"{origin}: unsupported activation_fn {act_fn!r} (supported: 'relu', 'topk')")
    if architecture == "standard" and act_fn == "topk":
        activation = "topk"  # pre-6.0 TopK SAEs
    k = None
    if activation == "topk":
        kwargs = cfg.get("activation_fn_kwargs") or {}
        raw_k = cfg.get("k", kwargs.get("k") if isinstance(kwargs, Mapping) else None)
        if raw_k is None:
            raise SAEFormatError(f"{origin}: topk SAE without 'k' (looked at 'k' and 'activation_fn_kwargs.k')")
        k = _int(raw_k, "k", origin)
    return activation, k


def _normalization(cfg: Mapping[str, Any], origin: str, norm_scaling_factor: float | None) -> tuple[str, float | None]:
    mode = cfg.get("normalize_activations", "none")
    if mode is None or mode is False:
        mode = "none"
    elif mode is True:  # pre-6.0 boolean
        mode = "expected_average_only_in"
    if mode not in INPUT_NORMALIZATIONS:
        raise SAEFormatError(
            f"{origin}: unknown normalize_activations {mode!r}; known: {list(INPUT_NORMALIZATIONS)}"
        )
    if mode == "expected_average_only_in":
        if norm_scaling_factor is None:
            raise SAEFormatError(
                f"{origin}: normalize_activations is 'expected_average_only_in' but no scaling factor "
                "was given; SAELens keeps it outside the directory (norm_scaling_factor in its "
                "pretrained_saes.yaml): pass norm_scaling_factor=..."
            )
        return mode, float(norm_scaling_factor)
    if norm_scaling_factor is not None:
        raise SAEFormatError(
            f"{origin}: norm_scaling_factor={norm_scaling_factor} given but normalize_activations is {mode!r}"
        )
    return mode, None


def _reject_unsupported(cfg: Mapping[str, Any], origin: str) -> None:
    head = _meta(cfg, "hook_head_index", "hook_point_head_index")
    if head is not None:
        raise SAEFormatError(f"{origin}: SAEs on a single attention head (hook_head_index={head}) are not supported")
    reshape = cfg.get("reshape_activations", "none")
    if reshape not in (None, "none"):
        raise SAEFormatError(f"{origin}: reshape_activations={reshape!r} is not supported (only 'none')")
    if cfg.get("rescale_acts_by_decoder_norm"):
        raise SAEFormatError(f"{origin}: rescale_acts_by_decoder_norm=true is not supported")


def _expected_weight_processing(cfg: Mapping[str, Any]) -> WeightProcessing:
    kwargs = _meta(cfg, "model_from_pretrained_kwargs") or {}
    return WeightProcessing(
        **{key: bool(kwargs.get(key, default)) for key, default in TRANSFORMER_LENS_DEFAULTS.items()}
    )


def _dtype(cfg: Mapping[str, Any], origin: str) -> torch.dtype:
    name = str(cfg.get("dtype", "float32")).removeprefix("torch.")
    if name not in DTYPES:
        raise SAEFormatError(f"{origin}: unknown dtype {cfg.get('dtype')!r}; known: {sorted(DTYPES)}")
    return DTYPES[name]


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - any failure here is a corrupt file
        raise SAEFormatError(f"{path}: not a readable safetensors file ({err})") from err


def _fold_scaling_factor(
    weights: dict[str, torch.Tensor], cfg: Mapping[str, Any], d_sae: int, origin: str, provenance: dict[str, Any]
) -> None:
    present = [key for key in SCALING_FACTOR_KEYS if key in weights]
    if not present:
        return
    if len(present) > 1:
        raise SAEFormatError(f"{origin}: both {present} present; expected at most one finetuning scaling factor")
    key = present[0]
    scale = check_tensor(weights.pop(key), key, (d_sae,), origin)
    if torch.equal(scale, torch.ones_like(scale)):
        provenance["scaling_factor"] = "all ones (no effect)"
        return
    if not cfg.get("finetuning_scaling_factor", False):
        raise SAEFormatError(
            f"{origin}: {key!r} holds values other than 1 but cfg.json does not set "
            "finetuning_scaling_factor=true, so whether to apply it is unknown"
        )
    weights["W_dec"] = weights["W_dec"] * scale.to(weights["W_dec"].dtype).unsqueeze(1)
    provenance["scaling_factor"] = f"{key} folded into W_dec (latents * {key} before decoding)"


def load_saelens_sae(
    directory: str | Path,
    dtype: torch.dtype | None = None,
    norm_scaling_factor: float | None = None,
    source: Mapping[str, Any] | None = None,
) -> SparseAutoencoder:
    """Load a SAELens SAE directory. ``dtype`` defaults to the cfg's dtype."""
    directory = Path(directory)
    cfg = _read_cfg(directory)
    origin = str(directory / CFG_FILENAME)
    _reject_unsupported(cfg, origin)
    activation, k = _activation(cfg, origin)
    normalization, factor = _normalization(cfg, origin, norm_scaling_factor)
    d_in, d_sae = _sizes(cfg, origin)
    apply_b_dec = cfg.get("apply_b_dec_to_input", True)
    if not isinstance(apply_b_dec, bool):
        raise SAEFormatError(f"{origin}: apply_b_dec_to_input must be true/false, got {apply_b_dec!r}")
    target_dtype = dtype or _dtype(cfg, origin)

    weights_path = directory / WEIGHTS_FILENAME
    if not weights_path.is_file():
        raise SAEFormatError(f"{directory}: no {WEIGHTS_FILENAME}")
    w_origin = str(weights_path)
    weights = _checked_weights(_load_safetensors(weights_path), cfg, activation, d_in, d_sae, w_origin)
    provenance: dict[str, Any] = {
        "format": "saelens",
        "path": str(directory),
        "sae_lens_version": _meta(cfg, "sae_lens_version") or _meta(cfg, "sae_lens_training_version"),
        "cfg": cfg,
    }
    _fold_scaling_factor(weights, cfg, d_sae, w_origin, provenance)
    provenance.update(source or {})
    try:
        config = SAEConfig(
            d_in=d_in,
            n_latents=d_sae,
            activation=activation,
            k=k,
            hook_point=_meta(cfg, "hook_name", "hook_point"),
            model_name=_meta(cfg, "model_name"),
            input_normalization=normalization,
            norm_scaling_factor=factor,
            apply_b_dec_to_input=apply_b_dec,
            expected_weight_processing=_expected_weight_processing(cfg),
            source=provenance,
        )
    except InvalidInputError as err:
        raise SAEFormatError(f"{origin}: {err}") from None
    return SparseAutoencoder.from_tensors(config, weights, _statistics(directory, d_sae), origin=w_origin,
                                          dtype=target_dtype)


def _sizes(cfg: Mapping[str, Any], origin: str) -> tuple[int, int]:
    """(d_in, d_sae) from cfg.json (d_sae may be given as an expansion factor)."""
    for key in ("d_in", "d_sae"):
        if key not in cfg and not (key == "d_sae" and "expansion_factor" in cfg):
            raise SAEFormatError(f"{origin}: missing {key!r}")
    d_in = _int(cfg["d_in"], "d_in", origin)
    d_sae = _int(cfg["d_sae"], "d_sae", origin) if "d_sae" in cfg else d_in * _int(cfg["expansion_factor"], "expansion_factor", origin)
    return d_in, d_sae


def _checked_weights(weights: dict[str, torch.Tensor], cfg: Mapping[str, Any], activation: str, d_in: int,
                     d_sae: int, w_origin: str) -> dict[str, torch.Tensor]:
    """The weights with the keys and shapes the architecture needs (a batchtopk training
    checkpoint's global threshold becomes a per-latent one); anything else is an error."""
    required = ["W_enc", "b_enc", "W_dec", "b_dec"]
    optional: list[str] = list(SCALING_FACTOR_KEYS)
    hint = ""
    if activation in ("jumprelu", "batchtopk"):
        if "threshold" not in weights and activation == "batchtopk" and "topk_threshold" in weights:
            # a training checkpoint: one global threshold, which inference applies to every latent
            global_threshold = weights.pop("topk_threshold")
            if global_threshold.numel() != 1:
                raise SAEFormatError(f"{w_origin}: 'topk_threshold' has shape {list(global_threshold.shape)}, expected a scalar")
            weights["threshold"] = torch.full((d_sae,), float(global_threshold), dtype=weights["W_enc"].dtype)
        required.append("threshold")
        if "threshold" not in weights:
            hint = f"a {activation} SAE needs its per-latent 'threshold' to run at inference"
    elif "threshold" in weights:
        hint = (
            f"'threshold' belongs to jumprelu/batchtopk SAEs but cfg.json says architecture="
            f"{cfg.get('architecture', 'standard')!r}; refusing to drop it"
        )
    check_keys(weights.keys(), required, w_origin, optional=optional, hint=hint)
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,), "threshold": (d_sae,)}
    for name in required:
        check_tensor(weights[name], name, shapes[name], w_origin)
    return weights


def _statistics(directory: Path, d_sae: int) -> dict[str, torch.Tensor]:
    """The optional sparsity file's per-latent log feature sparsity."""
    statistics: dict[str, torch.Tensor] = {}
    sparsity_path = directory / SPARSITY_FILENAME
    if sparsity_path.is_file():
        sparsity = _load_safetensors(sparsity_path)
        check_keys(sparsity.keys(), ("sparsity",), str(sparsity_path))
        statistics["log_feature_sparsity"] = check_tensor(sparsity["sparsity"], "sparsity", (d_sae,), str(sparsity_path))
    return statistics


def saelens_cfg(sae: SparseAutoencoder) -> dict[str, Any]:
    """A SAELens (>= 6.0 layout) cfg.json for ``sae``; raises SAEFormatError if not representable."""
    c = sae.config
    architecture = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}.get(c.activation)
    if architecture is None:
        raise SAEFormatError(f"the SAELens format has no {c.activation!r} activation")
    if c.activation == "topk" and c.topk_postact != "relu":
        raise SAEFormatError(f"SAELens TopK applies ReLU to the kept values; this SAE uses {c.topk_postact!r}")
    if c.input_normalization == "expected_average_only_in":
        raise SAEFormatError(
            "SAELens keeps the 'expected_average_only_in' scaling factor outside the directory; fold it into the weights first"
        )
    layer = None
    if c.hook_point and c.hook_point.startswith("blocks."):
        layer = int(c.hook_point.split(".")[1])
    kwargs = {k: v for k, v in c.expected_weight_processing.to_dict().items() if v is not None}
    cfg: dict[str, Any] = {
        "architecture": architecture,
        "d_in": c.d_in,
        "d_sae": c.n_latents,
        "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": c.input_normalization,
        "reshape_activations": "none",
        "metadata": {
            "model_name": c.model_name,
            "hook_name": c.hook_point,
            "hook_layer": layer,
            "hook_head_index": None,
            "model_from_pretrained_kwargs": kwargs,
            "sae_lens_version": "6.0.0",
            "sae_lens_training_version": "6.0.0",
        },
    }
    if c.activation == "topk":
        cfg["k"] = c.k
    return cfg


def save_saelens_sae(sae: SparseAutoencoder, directory: str | Path) -> Path:
    """Write ``sae`` as a SAELens directory (BatchTopK is written as JumpReLU, as SAELens does)."""
    directory = Path(directory)
    cfg = saelens_cfg(sae)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous().clone() for name, t in sae.tensors().items()}
    save_file(tensors, str(directory / WEIGHTS_FILENAME))
    if "log_feature_sparsity" in sae.statistics:
        save_file({"sparsity": sae.statistics["log_feature_sparsity"].contiguous()}, str(directory / SPARSITY_FILENAME))
    (directory / CFG_FILENAME).write_text(json.dumps(cfg, indent=2))
    return directory
