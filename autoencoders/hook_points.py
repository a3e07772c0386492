"""Hook point names (TransformerLens style) where SAEs attach, their widths, and OpenAI's locations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mechscope.inference.errors import InvalidInputError

D_MODEL_BLOCK_HOOKS = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "ln1.hook_normalized",
    "ln2.hook_normalized",
    "attn.hook_z",  # heads flattened: n_heads * d_head == d_model
)
"""Per-block hooks whose width is d_model."""

D_MLP_BLOCK_HOOKS = ("mlp.hook_pre", "mlp.hook_post")
"""Per-block hooks whose width is the MLP width (d_mlp, default 4 * d_model)."""

D_MODEL_GLOBAL_HOOKS = ("hook_embed", "hook_pos_embed", "ln_final.hook_normalized")

RESIDUAL_WRITING_HOOKS = (
    "hook_embed",
    "hook_pos_embed",
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
)
"""Hooks whose values change when writing weights are centred (centre_writing_weights)."""

OPENAI_LOCATIONS = {
    "resid_delta_attn": "hook_attn_out",
    "resid_post_attn": "hook_resid_mid",
    "resid_delta_mlp": "hook_mlp_out",
    "resid_post_mlp": "hook_resid_post",
    "mlp_post_act": "mlp.hook_post",
}
"""OpenAI sparse_autoencoder location name -> TransformerLens hook suffix inside ``blocks.L``."""

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook point: ``layer`` is None for global hooks (embeddings, final LayerNorm)."""

    name: str
    layer: int | None
    suffix: str


def parse_hook_point(name: str) -> HookPoint:
    """Parse ``blocks.L.<suffix>`` or a global hook name; unknown names raise InvalidInputError."""
    if not isinstance(name, str):
        raise InvalidInputError(f"hook point must be a string, got {type(name).__name__}", field="hook_point")
    match = _BLOCK_RE.match(name)
    if match:
        suffix = match.group(2)
        if suffix in D_MODEL_BLOCK_HOOKS or suffix in D_MLP_BLOCK_HOOKS:
            return HookPoint(name, int(match.group(1)), suffix)
        known = list(D_MODEL_BLOCK_HOOKS + D_MLP_BLOCK_HOOKS)
        raise InvalidInputError(
            f"unknown hook point {name!r}: {suffix!r} is not an SAE hook inside a block; known: {known}",
            field="hook_point",
        )
    if name in D_MODEL_GLOBAL_HOOKS:
        return HookPoint(name, None, name)
    raise InvalidInputError(
        f"unknown hook point {name!r}; expected 'blocks.L.<hook>' or one of {list(D_MODEL_GLOBAL_HOOKS)}",
        field="hook_point",
    )


def mlp_width(model_config: Any) -> int:
    d_mlp = getattr(model_config, "d_mlp", None)
    return int(d_mlp) if d_mlp is not None else 4 * int(model_config.d_model)


def hook_point_width(hook: HookPoint, model_config: Any) -> int:
    """Width of the activation at ``hook`` for a GPT-2-like model (d_model, d_mlp)."""
    if hook.suffix in D_MLP_BLOCK_HOOKS:
        return mlp_width(model_config)
    return int(model_config.d_model)


def openai_hook_point(location: str, layer: int) -> str:
    """``blocks.{layer}.<hook>`` for an OpenAI location name (``resid_delta_mlp`` ...)."""
    if location not in OPENAI_LOCATIONS:
        raise InvalidInputError(
            f"unknown OpenAI SAE location {location!r}; known: {sorted(OPENAI_LOCATIONS)}", field="location"
        )
    return f"blocks.{layer}.{OPENAI_LOCATIONS[location]}"
