"""The debugger: node tables and traces, patching sweeps, path patching, attribution graphs, the
logit lens, a node's promoted tokens and generation with interventions. Each route checks its
limits and calls one engine function (README: Architecture traces one request through here)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ...engine.generation import generate as run_generate
from ...engine.graph import attribution_graph
from ...engine.head_grid import head_grid
from ...engine.lens import logit_lens as run_logit_lens, write_tokens as run_write_tokens
from ...engine.patching import path_patching, patching_sweep as run_patching_sweep
from ...schemas import (AttributionRequest, AttributionResult, GraphRequest, GraphResult, HeadGridRequest,
                        HeadGridResult, LogitLensRequest,
                        LogitLensResult, PatchingSweepRequest, PatchingSweepResult, PathPatchingRequest,
                        PathPatchingResult, WriteTokensResult)
from ...server_schemas import GenerateRequest, GenerateResult, WriteTokensRequest
from ..service import ComputeService, service

router = APIRouter(tags=["debugger"])


@router.post("/attribution", response_model=AttributionResult)
async def attribution(request: AttributionRequest, svc: ComputeService = Depends(service)) -> Response:
    """The node table: activation, write magnitude, direct and estimated total effect of every
    node for each prompt (with its interventions), top-k unioned across prompts; or a trace of
    one node upstream. Requests that arrive together share one forward/backward pass."""
    return await svc.attribute(request)


@router.post("/patching/sweep", response_model=PatchingSweepResult)
async def patching_sweep(request: PatchingSweepRequest, svc: ComputeService = Depends(service)) -> Response:
    """Activation patching from the clean into the corrupted prompt, per component (× position).
    Cells where clean and corrupted losses are equal are null."""
    return await svc.compute("patching/sweep", request, lambda c: c.sweep(request),
                             lambda e: run_patching_sweep(e.model, request))


@router.post("/patching/path", response_model=PathPatchingResult)
async def patching_path(request: PathPatchingRequest, svc: ComputeService = Depends(service)) -> Response:
    """Exact path patching from sender heads through receiver heads' q/k/v inputs."""
    return await svc.compute("patching/path", request, lambda c: c.path(request),
                             lambda e: path_patching(e.model, request))


@router.post("/graph", response_model=GraphResult)
async def graph(request: GraphRequest, svc: ComputeService = Depends(service)) -> Response:
    """Attribution graph: the top nodes for the loss and the weighted edges between them."""
    return await svc.compute("graph", request, lambda c: c.graph(request), lambda e: attribution_graph(e, request))


@router.post("/logit-lens", response_model=LogitLensResult)
async def logit_lens(request: LogitLensRequest, svc: ComputeService = Depends(service)) -> Response:
    return await svc.compute("logit-lens", request, lambda c: c.logit_lens(request),
                             lambda e: run_logit_lens(e.model, request))


@router.post("/heads/grid", response_model=HeadGridResult)
async def heads_grid(request: HeadGridRequest, svc: ComputeService = Depends(service)) -> Response:
    """Per head (layer × head): direct effect, estimated total effect (summed over its pairs) and
    the exact effect of zero-ablating it at every position."""
    return await svc.compute("heads/grid", request, lambda c: c.prompt(request.prompt, request.prepend_bos, "prompt"),
                             lambda e: head_grid(e, request))


@router.post("/write-tokens", response_model=WriteTokensResult)
async def write_tokens(request: WriteTokensRequest, svc: ComputeService = Depends(service)) -> Response:
    """Tokens a neuron's or latent's write direction promotes and suppresses."""
    return await svc.compute("write-tokens", request, lambda c: c.write_tokens(request),
                             lambda e: run_write_tokens(e.model, e.saes, request.node, request.k,
                                                        e.shared_unembedding_tokens))


@router.post("/generate", response_model=GenerateResult)
async def generate(request: GenerateRequest, svc: ComputeService = Depends(service)) -> Response:
    """Continue prompts, optionally with components zeroed or steered at every position.
    Deterministic requests (greedy, or sampled with a seed) are cached."""
    deterministic = request.temperature == 0 or request.seed is not None
    return await svc.compute("generate", request, lambda c: c.generate(request), lambda e: run_generate(e, request),
                             cacheable=deterministic)
