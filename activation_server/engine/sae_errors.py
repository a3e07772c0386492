"""SAE errors that follow their input (issue 23, ``total_effect_ln='live'``).

A spliced SAE outputs ``recon(latents) + error`` with ``error = input − recon(encode(input))``
computed without gradient (see :class:`mechscope.autoencoders.SAESplice`): the error is a fixed
node, and a gradient from downstream reaches upstream nodes only through the SAE's reconstruction.
In a real ablation upstream of the SAE, though, the error is recomputed from the new input, so the
SAE passes the change through unaltered (output = input). For the true gradient the error must
carry ``∂error/∂input = I − J(recon ∘ encode)``: these hooks add ``e − e.detach()`` (zero, exactly)
with ``e = input − recon(encode(input))`` recomputed with gradient from the SAE's input. The SAE's
own latents still reach the output only through the reconstruction (the error does not depend on
the hooked latents), as when a latent is ablated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mechscope.inference.hooks import HookContext


def live_error_hooks(saes: dict, points: list[str]) -> list[tuple[str, Callable]]:
    """Forward hooks (stash each SAE's input, then give its error a gradient) for ``points``."""
    inputs: dict[str, torch.Tensor] = {}
    hooks: list[tuple[str, Callable]] = []
    for point in points:
        def stash(x: torch.Tensor, ctx: HookContext, point: str = point) -> None:
            inputs[point] = x

        def follow(error: torch.Tensor, ctx: HookContext, point: str = point) -> torch.Tensor:
            x_in, sae = inputs.pop(point), saes[point]
            if not x_in.requires_grad:
                return error
            live = x_in - sae.decode(sae.activate(sae.encode_pre(x_in)), sae.input_norm(x_in)).to(x_in.dtype)
            return error + (live - live.detach())
        hooks += [(f"{point}.hook_sae_input", stash), (f"{point}.hook_sae_error", follow)]
    return hooks
