"""Can this SAE be used on this model? :func:`check_compatible` answers or raises, naming the problem."""

from __future__ import annotations

from typing import Any, Mapping

from mechscope.inference.errors import InvalidInputError

from .config import SAEConfig, WeightProcessing
from .errors import SAEIncompatibleError
from .hook_points import RESIDUAL_WRITING_HOOKS, hook_point_width, mlp_width, parse_hook_point


def check_compatible(
    sae: Any,
    model_config: Any,
    weight_processing: WeightProcessing | Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`SAEIncompatibleError` unless ``sae`` fits a model of ``model_config``.

    ``sae``: a SparseAutoencoder or an SAEConfig. ``model_config``: any object with ``d_model``,
    ``n_layers`` and ``d_mlp`` (None or absent -> 4 * d_model), such as the model's ``cfg``. ``weight_processing``: the model's
    processing (WeightProcessing or dict such as ``{"center_writing_weights": False, "fold_ln":
    False}``; None = unprocessed).

    Checks: the SAE names a known hook point; its layer exists; ``d_in`` equals the hook's width
    (d_model for residual/attn_out/mlp_out hooks, the MLP width for ``mlp.hook_pre/post``); and the
    weight processing the SAE was trained with matches wherever it changes the hooked values:
    centred writing weights for residual-stream hooks, folded LayerNorm for ``*.hook_normalized``.
    """
    config: SAEConfig = sae if isinstance(sae, SAEConfig) else sae.config
    try:
        model_wp = WeightProcessing.coerce(weight_processing)
    except InvalidInputError as err:
        raise SAEIncompatibleError(str(err), field="weight_processing") from None
    if config.hook_point is None:
        raise SAEIncompatibleError(
            "the SAE records no hook point, so where it attaches is unknown; load it with hook_point=..."
        )
    try:
        hook = parse_hook_point(config.hook_point)
    except InvalidInputError as err:
        raise SAEIncompatibleError(f"SAE hook point: {err}") from None

    n_layers = int(model_config.n_layers)
    if hook.layer is not None and not 0 <= hook.layer < n_layers:
        raise SAEIncompatibleError(
            f"SAE hook point {hook.name!r} is at layer {hook.layer}, but the model has only "
            f"{n_layers} layers (0..{n_layers - 1})"
        )
    width = hook_point_width(hook, model_config)
    if config.d_in != width:
        raise SAEIncompatibleError(
            f"SAE d_in={config.d_in} does not match the width {width} of hook point {hook.name!r} "
            f"(model d_model={model_config.d_model}, d_mlp={mlp_width(model_config)})"
        )

    expected = config.expected_weight_processing
    checks = []
    if hook.suffix in RESIDUAL_WRITING_HOOKS:
        checks.append(("center_writing_weights", "centred writing weights"))
    if hook.suffix.endswith("hook_normalized"):
        checks.append(("fold_ln", "folded LayerNorm weights"))
    for option, words in checks:
        want, have = getattr(expected, option), bool(getattr(model_wp, option))
        if want is not None and want != have:
            raise SAEIncompatibleError(
                f"SAE at {hook.name!r} was trained on a model {'with' if want else 'without'} {words} "
                f"({option}={want}), but this model has {option}={have}: its activations at that hook "
                "differ, so the latents would be wrong",
                field="weight_processing",
            )
