"""The node groups a build covers: the neurons of each MLP layer, the heads of each attention layer,
the latents of each spliced SAE — each with the hook point whose activation is the group's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mechscope.inference.errors import InvalidInputError
from mechscope.inference.hooks import layer_of

from .records import ATTN_HEAD, MLP_NEURON, SAE_LATENT, group_name


@dataclass(frozen=True)
class GroupSpec:
    kind: str
    layer: int | None
    n_nodes: int
    capture: str
    """The hook point whose activation is the group's (for heads: the pattern)."""
    hook_point: str | None = None
    """For SAE latents: where the SAE is spliced."""

    @property
    def name(self) -> str:
        return group_name(self.kind, self.layer, self.hook_point)

    @property
    def token_pair(self) -> bool:
        return self.kind == ATTN_HEAD

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "layer": self.layer, "hook_point": self.hook_point,
                "n_nodes": self.n_nodes, "token_pair": self.token_pair}


def group_specs(model, splices: Sequence, kinds: Sequence[str]) -> list[GroupSpec]:  # type: ignore[no-untyped-def]
    cfg = model.cfg
    specs: list[GroupSpec] = []
    for layer in range(cfg.n_layers):
        if MLP_NEURON in kinds:
            specs.append(GroupSpec(MLP_NEURON, layer, cfg.d_mlp, f"blocks.{layer}.mlp.hook_post"))
        if ATTN_HEAD in kinds:
            specs.append(GroupSpec(ATTN_HEAD, layer, cfg.n_heads, f"blocks.{layer}.attn.hook_pattern"))
    if SAE_LATENT in kinds:
        seen: set[str] = set()
        for splice in splices:
            if splice.hook_point in seen:
                raise InvalidInputError(f"two SAEs are spliced at {splice.hook_point!r}; give one per hook point",
                                        field="saes")
            seen.add(splice.hook_point)
            specs.append(GroupSpec(SAE_LATENT, layer_of(splice.hook_point), splice.sae.n_latents,
                                   f"{splice.hook_point}.hook_sae_acts_post", splice.hook_point))
    return specs
