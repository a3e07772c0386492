"""What the server serves: the model, its SAEs, the node datasets and the request limits."""

from __future__ import annotations

import importlib.metadata
import re

import torch
from fastapi import APIRouter, Depends

from ...server_schemas import Limits, ModelInfo, SaeInfo, ServerInfo
from ..service import ComputeService, service
from .datasets import dataset_list

router = APIRouter(tags=["metadata"])
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def version() -> str:
    try:
        return importlib.metadata.version("mechscope")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def model_info(model, shared: torch.Tensor | None = None) -> ModelInfo:
    """``shared``: :func:`~mechscope.inference.vocabulary.shared_unembedding_mask` of the model (the
    tokens without an embedding of their own); the others are listed as ``known_token_ids``."""
    cfg = model.cfg
    known = None if shared is None or not bool(shared.any()) else (~shared).nonzero().flatten().tolist()
    return ModelInfo(name=cfg.name, n_layer=cfg.n_layers, n_head=cfg.n_heads, d_model=cfg.d_model, d_head=cfg.d_head,
                     d_mlp=cfg.d_mlp, n_ctx=cfg.n_ctx, vocab_size=cfg.d_vocab, activation_function=cfg.act_fn,
                     known_token_ids=known)


def sae_info(point: str, sae) -> SaeInfo:
    cfg = sae.config
    match = _BLOCK.match(point)
    source = cfg.source.get("format") if isinstance(cfg.source, dict) else None
    return SaeInfo(hook_point=point, layer=int(match.group(1)) if match else None, d_in=cfg.d_in,
                   n_latents=cfg.n_latents, activation=cfg.activation, k=cfg.k,
                   input_normalization=cfg.input_normalization, source=source)


def sae_list(engine) -> list[SaeInfo]:
    return [sae_info(p, s) for p, s in sorted(engine.saes.items())]


@router.get("/info", response_model=ServerInfo)
async def info(svc: ComputeService = Depends(service)) -> ServerInfo:
    """The model, the loaded SAEs and node datasets, and the request limits."""
    engine = svc.state.require_engine()
    lim = svc.config.limits
    limits = Limits(max_prompt_tokens=lim.prompt_tokens(engine.model.cfg.n_ctx), max_prompts=lim.max_prompts,
                    max_top_k=lim.max_top_k, max_sweep_cells=lim.max_sweep_cells, max_new_tokens=lim.max_new_tokens,
                    max_interventions=lim.max_interventions, max_body_bytes=lim.max_body_bytes)
    return ServerInfo(version=version(), model=model_info(engine.model, engine.shared_unembedding_tokens),
                      saes=sae_list(engine),
                      datasets=dataset_list(svc.state), limits=limits, auth_required=svc.config.auth_token is not None)


@router.get("/saes", response_model=list[SaeInfo])
async def saes(svc: ComputeService = Depends(service)) -> list[SaeInfo]:
    return sae_list(svc.state.require_engine())
