"""Which engine a server loads, as a picklable :class:`EngineSpec`: the server process and each of
its compute processes (see :mod:`..http.compute_processes`) load the same one from it."""

from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger("mechscope.server")


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    model: str
    """organism, gpt2, gpt2-medium, ... or a checkpoint directory"""
    saes: tuple[str, ...] = ()
    """SAE names or paths to load"""
    organism_saes: bool = False
    """load the organism's own SAEs (what ``mechscope serve`` does for the organism by default)"""
    device: str = "cpu"
    """where the model and SAEs live (a resolved --device: cpu, cuda, cuda:N)"""
    dtype: str = "float32"
    """their weights' precision (--dtype: float32, bfloat16, float16)"""


def _load_saes(spec: EngineSpec, model) -> list:
    from mechscope.autoencoders import check_compatible, load_sae
    saes = [load_sae(s) for s in spec.saes]
    if spec.organism_saes:
        try:
            from mechscope.autoencoders.organism_saes import load_organism_saes
        except ImportError:
            log.warning("the organism's SAEs are not available (mechscope.autoencoders.organism_saes is missing): "
                        "serving without them")
        else:
            saes += list(load_organism_saes())
    for sae in saes:
        check_compatible(sae, model.cfg)
    from mechscope.inference.devices import DTYPES
    return [sae.to(device=spec.device, dtype=DTYPES[spec.dtype]) for sae in saes]


def load_engine(spec: EngineSpec, *, verbose: bool = True):
    from mechscope.inference import load_model

    from .engine import Engine
    from mechscope.inference.devices import DTYPES
    model = load_model(spec.model, device=spec.device, dtype=DTYPES[spec.dtype])
    saes = _load_saes(spec, model)
    if verbose:
        log.info("model %s: %d layers, d_model %d, context %d (%s, %s)", model.cfg.name, model.cfg.n_layers,
                 model.cfg.d_model, model.cfg.n_ctx, spec.device, spec.dtype)
        for sae in saes:
            log.info("SAE at %s: %d latents (%s)", sae.config.hook_point, sae.n_latents, sae.config.activation)
    return Engine(model, saes)
