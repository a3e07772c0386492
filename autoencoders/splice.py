"""Splicing SAEs into a model's forward pass, with an error term.

At hook point ``P`` the activation ``x`` is replaced by ``recon(latents) + error`` where
``error = x - recon(clean latents)``: the model's output is unchanged until a latent is edited, and
editing latent ``i`` changes the output by exactly its decoder contribution. New hook points:

    P.hook_sae_input       x as the SAE sees it
    P.hook_sae_acts_pre    pre-activations [..., n_latents]
    P.hook_sae_acts_post   latents         [..., n_latents]   (ablate / patch / read gradients here)
    P.hook_sae_recon       reconstruction from the (possibly edited) latents
    P.hook_sae_error       x - reconstruction of the unedited latents
    P.hook_sae_output      what continues down the model

Gradients: the error term is a constant of the backward pass (it is detached), so gradients reach
the layers before P only through the latents — the usual "SAE replacement model with error nodes"
linearisation. Latent gradients are exact (``W_dec`` applied to the gradient at P).

    model(tokens, splices=[SAESplice(sae)], interventions=[ZeroAblate("blocks.1.hook_mlp_out.hook_sae_acts_post", index=7)])
"""

from __future__ import annotations

import dataclasses

import torch

from mechscope.inference.hooks import HookContext, hook_axes
from mechscope.inference.errors import InvalidInputError

from .sae import SparseAutoencoder

SAE_HOOK_SUFFIXES = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recon",
                     "hook_sae_error", "hook_sae_output")


@dataclasses.dataclass(frozen=True, eq=False)
class SAESplice:
    """An SAE spliced in at ``hook_point`` (by default the one its config names)."""

    sae: SparseAutoencoder
    hook_point: str = ""

    def __post_init__(self) -> None:
        point = self.hook_point or self.sae.config.hook_point
        if not point:
            raise InvalidInputError("this SAE's config names no hook point; pass hook_point=...", field="hook_point")
        hook_axes(point)  # raises UnknownHookError for a name the model cannot have
        object.__setattr__(self, "hook_point", point)

    def name(self, suffix: str) -> str:
        return f"{self.hook_point}.{suffix}"

    def sub_hook_names(self) -> list[str]:
        return [self.name(s) for s in SAE_HOOK_SUFFIXES]

    def __call__(self, x: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        run = ctx.run if ctx.run is not None else (lambda name, t: t)
        sae = self.sae
        x_in = run(self.name("hook_sae_input"), x)
        norm = sae.input_norm(x_in)
        pre = run(self.name("hook_sae_acts_pre"), sae.encode_pre(x_in))
        clean = sae.activate(pre)
        latents = run(self.name("hook_sae_acts_post"), clean)
        recon = sae.decode(latents, norm)
        hooked_recon = run(self.name("hook_sae_recon"), recon)
        with torch.no_grad():
            clean_recon = recon if latents is clean else sae.decode(clean, norm)
            error = (x_in - clean_recon).to(x.dtype)
        error = run(self.name("hook_sae_error"), error)
        return run(self.name("hook_sae_output"), hooked_recon.to(x.dtype) + error)
