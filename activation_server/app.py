"""The activation server's FastAPI app: the engine's requests and results over HTTP.

``create_app(state, config)`` builds the app for a :class:`ServerState` (an engine and node datasets,
ready or loading). Routes under /api/v1 (bearer token when configured); /healthz and /readyz outside;
the built neuron viewer at /. Engine calls run in a bounded thread pool with a bounded wait queue
(503 + Retry-After beyond it); identical requests are answered from an LRU cache.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
import anyio
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from . import api_compute
from .api_datasets import accepts_hook_point, describe, to_json
from .api_models import (DatasetInfo, DatasetNodeKind, DetokenizeRequest, DetokenizeResult, GenerateRequest,
                         GenerateResult, Health, Limits as LimitsModel, MessageErrorBody, NodeActivationsRequest,
                         NodeActivationsResult, NodePage, SaeInfo, ServerInfo, TokenizeRequest, TokenizeResult,
                         WriteTokensRequest)
from .http_config import LOCALHOST_ORIGIN_REGEX, ServerConfig
from .http_docs import install_offline_docs
from .http_errors import NodeNotFound, install_error_handlers
from .http_coalescer import Coalescer
from .http_limits import LimitChecker
from .http_runner import ComputeRunner, ResultCache
from .http_security import BodySizeLimit, make_auth_dependency, readiness_detail
from .http_state import ServerState
from .http_viewer import mount_viewer
from .schemas import (AttributionRequest, AttributionResult, GraphRequest, GraphResult, LogitLensRequest,
                      LogitLensResult, PatchingSweepRequest, PatchingSweepResult, PathPatchingRequest,
                      PathPatchingResult, WriteTokensResult)

log = logging.getLogger("mechscope.server")

API_PREFIX = "/api/v1"

_ERROR_RESPONSES = {
    400: {"model": MessageErrorBody, "description": "the body could not be read as JSON"},
    401: {"model": MessageErrorBody, "description": "missing or wrong bearer token (only with --auth-token)"},
    413: {"model": MessageErrorBody, "description": "request body over the size limit"},
    500: {"model": MessageErrorBody, "description": "unexpected error (logged under error_id)"},
    503: {"model": MessageErrorBody, "description": "not ready, or busy: retry after the Retry-After header"},
}


def version() -> str:
    try:
        return importlib.metadata.version("mechscope")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def canonical_json(request: BaseModel) -> str:
    return json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def create_app(state: ServerState, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    runner = ComputeRunner(config.workers, config.max_queue, config.retry_after_s)
    cache = ResultCache(config.cache_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        runner.shutdown()
        if state.engine_processes is not None:
            state.engine_processes.shutdown()

    app = FastAPI(title="mechscope activation server", version=version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None,   # served with local assets (http_docs)
                  description="A TDB-style circuit debugger for GPT-2-family models. Request and result shapes are "
                              "those of mechscope.activation_server.schemas; see the README for the vocabulary.")
    app.state.runner, app.state.cache, app.state.mechscope = runner, cache, state
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(CORSMiddleware,
                       allow_origins=list(config.allowed_origins or ()),
                       allow_origin_regex=None if config.allowed_origins else LOCALHOST_ORIGIN_REGEX,
                       allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
                       expose_headers=["Retry-After"], max_age=600)

    # --- health ------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz(request: Request):
        """Readiness: 200 once the model and SAEs are loaded, 503 before (or if loading failed, or
        while the compute processes restart after one died). Why loading failed (which may name
        local paths) is shown only to callers with the bearer token."""
        processes = state.engine_processes
        if state.status == "ready" and (processes is None or processes.ready):
            return Health(status="ok")
        if state.status == "ready":
            body = Health(status="loading", detail="a compute process exited; the compute processes are restarting")
        else:
            body = Health(status="failed" if state.status == "failed" else "loading",
                          detail=readiness_detail(state, request, config.auth_token))
        return JSONResponse(status_code=503, content=body.model_dump(), headers={"Retry-After": "5"})

    # --- shared machinery --------------------------------------------------------------------------
    def json_bytes(result: BaseModel) -> bytes:
        return result.model_dump_json().encode()

    def json_response(body: bytes) -> Response:
        return Response(content=body, media_type="application/json")

    async def cached(endpoint: str, request: BaseModel, produce: Callable[[], Awaitable[bytes]],
                     cacheable: bool = True) -> Response:
        """The JSON answer for ``request``: from the LRU cache of identical requests, or ``produce``d
        (and cached)."""
        state.require_engine()
        key = f"{endpoint}:{canonical_json(request)}"
        if cacheable and (hit := cache.get(key)) is not None:
            return json_response(hit)
        body = await produce()
        if cacheable:
            cache.put(key, body)
        return json_response(body)

    async def compute(endpoint: str, request: BaseModel, check: Callable[[LimitChecker], None],
                      work: Callable[[object], BaseModel], cacheable: bool = True) -> Response:
        """Run ``work`` in the pool; the result is serialized there too (off the event loop) and
        the JSON bytes are what the cache keeps."""
        engine = state.require_engine()

        def job():
            check(LimitChecker(config.limits, engine.model.cfg))
            return json_bytes(work(engine))

        return await cached(endpoint, request, lambda: runner.run(job), cacheable)

    def attribute_batch(requests: list[AttributionRequest]) -> list[bytes | Exception]:
        """Engine side of the attribution coalescer: limits per request, then one shared call (in
        the compute processes when there are some), serialized results."""
        engine = state.require_engine()
        checker = LimitChecker(config.limits, engine.model.cfg)
        out: list[bytes | Exception | None] = [None] * len(requests)
        runnable = []
        for i, r in enumerate(requests):
            try:
                checker.attribution(r)
                runnable.append(i)
            except Exception as e:
                out[i] = e
        if runnable:
            batch = [requests[i] for i in runnable]
            processes = state.engine_processes
            results = processes.attribute_json(batch) if processes is not None else engine.attribute_many_json(batch)
            for i, result in zip(runnable, results):
                out[i] = result
        return out  # type: ignore[return-value]

    # compute processes take one call at a time (split over all of them) and gather the clients
    # they answered; threads of this process run up to `workers` calls at once
    in_processes = config.compute_processes > 0
    coalescer = Coalescer(runner, attribute_batch, max_size=config.batch_prompts,
                          max_waiting=config.workers + config.max_queue, size=lambda r: len(r.prompts),
                          max_running=1 if in_processes else config.workers,
                          gather_s=config.gather_ms / 1000 if in_processes else 0.0)
    app.state.attribution_coalescer = coalescer

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(make_auth_dependency(config.auth_token))],
                    responses=_ERROR_RESPONSES)

    # --- metadata ----------------------------------------------------------------------------------
    def sae_list(engine) -> list[SaeInfo]:
        return [api_compute.sae_info(p, s) for p, s in sorted(engine.saes.items())]

    def dataset_list() -> list[DatasetInfo]:
        return [DatasetInfo(name=name, description=describe(ds), manifest=to_json(dict(ds.manifest)))
                for name, ds in sorted(state.datasets.items())]

    @api.get("/info", response_model=ServerInfo, tags=["metadata"])
    async def info() -> ServerInfo:
        """The model, the loaded SAEs and node datasets, and the request limits."""
        engine = state.require_engine()
        lim = config.limits
        limits = LimitsModel(max_prompt_tokens=lim.prompt_tokens(engine.model.cfg.n_positions),
                             max_prompts=lim.max_prompts, max_top_k=lim.max_top_k,
                             max_sweep_cells=lim.max_sweep_cells, max_new_tokens=lim.max_new_tokens,
                             max_interventions=lim.max_interventions, max_body_bytes=lim.max_body_bytes)
        return ServerInfo(version=version(), model=api_compute.model_info(engine.model), saes=sae_list(engine),
                          datasets=dataset_list(), limits=limits, auth_required=config.auth_token is not None)

    @api.get("/saes", response_model=list[SaeInfo], tags=["metadata"])
    async def saes() -> list[SaeInfo]:
        return sae_list(state.require_engine())

    @api.get("/datasets", response_model=list[DatasetInfo], tags=["metadata"])
    async def datasets() -> list[DatasetInfo]:
        state.require_engine()
        return dataset_list()

    # --- tokenizer ---------------------------------------------------------------------------------
    @api.post("/tokenize", response_model=TokenizeResult, tags=["tokenizer"])
    async def tokenize(request: TokenizeRequest) -> TokenizeResult:
        return await anyio.to_thread.run_sync(api_compute.tokenize, request)

    @api.post("/detokenize", response_model=DetokenizeResult, tags=["tokenizer"])
    async def detokenize(request: DetokenizeRequest) -> DetokenizeResult:
        return await anyio.to_thread.run_sync(api_compute.detokenize, request)

    # --- the debugger ------------------------------------------------------------------------------
    @api.post("/attribution", response_model=AttributionResult, tags=["debugger"])
    async def attribution(request: AttributionRequest) -> Response:
        """The node table: activation, write magnitude, direct and estimated total effect of every
        node for each prompt (with its interventions), top-k unioned across prompts; or a trace of
        one node upstream. Requests that arrive together share one forward/backward pass."""
        return await cached("attribution", request, lambda: coalescer.submit(request))

    @api.post("/patching/sweep", response_model=PatchingSweepResult, tags=["debugger"])
    async def patching_sweep(request: PatchingSweepRequest) -> Response:
        """Activation patching from the clean into the corrupted prompt, per component (× position).
        Cells where clean and corrupted losses are equal are null."""
        from .patching import patching_sweep as run
        return await compute("patching/sweep", request, lambda c: c.sweep(request), lambda e: run(e.model, request))

    @api.post("/patching/path", response_model=PathPatchingResult, tags=["debugger"])
    async def patching_path(request: PathPatchingRequest) -> Response:
        """Exact path patching from sender heads through receiver heads' q/k/v inputs."""
        from .patching import path_patching as run
        return await compute("patching/path", request, lambda c: c.path(request), lambda e: run(e.model, request))

    @api.post("/graph", response_model=GraphResult, tags=["debugger"])
    async def graph(request: GraphRequest) -> Response:
        """Attribution graph: the top nodes for the loss and the weighted edges between them."""
        from .graph import attribution_graph
        return await compute("graph", request, lambda c: c.graph(request), lambda e: attribution_graph(e, request))

    @api.post("/logit-lens", response_model=LogitLensResult, tags=["debugger"])
    async def logit_lens(request: LogitLensRequest) -> Response:
        from .lens import logit_lens as run
        return await compute("logit-lens", request, lambda c: c.logit_lens(request), lambda e: run(e.model, request))

    @api.post("/write-tokens", response_model=WriteTokensResult, tags=["debugger"])
    async def write_tokens(request: WriteTokensRequest) -> Response:
        """Tokens a neuron's or latent's write direction promotes and suppresses."""
        from .lens import write_tokens as run
        return await compute("write-tokens", request, lambda c: c.write_tokens(request),
                             lambda e: run(e.model, e.saes, request.node, request.k, e.shared_unembedding_tokens))

    @api.post("/generate", response_model=GenerateResult, tags=["debugger"])
    async def generate(request: GenerateRequest) -> Response:
        """Continue prompts, optionally with components zeroed or steered at every position.
        Deterministic requests (greedy, or sampled with a seed) are cached."""
        deterministic = request.temperature == 0 or request.seed is not None
        return await compute("generate", request, lambda c: c.generate(request),
                             lambda e: api_compute.generate(e, request), cacheable=deterministic)

    # --- nodes -------------------------------------------------------------------------------------
    @api.post("/nodes/activations", response_model=NodeActivationsResult, tags=["nodes"])
    async def node_activations(request: NodeActivationsRequest) -> Response:
        """One component's activations on the given prompts: per token, or the (query, key) matrix for a head."""
        return await compute("nodes/activations", request, lambda c: c.node_activations(request),
                             lambda e: api_compute.node_activations(e, request))

    @api.get("/nodes/{kind}/{layer}/{index}", response_model=NodePage, tags=["nodes"],
             responses={404: {"model": MessageErrorBody, "description": "no dataset holds this node"}})
    async def node_page(kind: DatasetNodeKind, layer: int = Path(ge=0, le=10_000), index: int = Path(ge=0, le=10**9),
                        dataset: str | None = Query(default=None, max_length=200,
                                                    description="dataset name (default: the first that has the node)"),
                        sae: str | None = Query(default=None, max_length=200,
                                                description="sae_latent: the SAE's hook point, when ambiguous")
                        ) -> NodePage:
        """A node's page data (top-activating examples, samples, statistics) from the node datasets."""
        state.require_engine()
        if dataset is not None and dataset not in state.datasets:
            raise NodeNotFound(f"no dataset named {dataset!r}; loaded: {sorted(state.datasets)}")
        names = [dataset] if dataset is not None else sorted(state.datasets)
        if not names:
            raise NodeNotFound("no node datasets are loaded (start the server with --datasets)")
        key = json.dumps(["nodes", kind, layer, index, sae, dataset])   # sae=None (text) is not None
        if (hit := cache.get(key)) is not None:
            return hit
        page = await anyio.to_thread.run_sync(_find_node, state, names, kind, layer, index, sae)
        cache.put(key, page)
        return page

    app.include_router(api)
    install_offline_docs(app)
    mount_viewer(app, config.viewer_dir)
    return app


def _find_node(state: ServerState, names: list[str], kind: str, layer: int, index: int, sae: str | None) -> NodePage:
    from mechscope.inference.errors import InvalidInputError
    misses = []
    for name in names:
        dataset = state.datasets[name]
        try:
            if sae and accepts_hook_point(dataset):
                data = dataset.node(kind, layer, index, hook_point=sae)
            else:  # a dataset without hook points holds one group per (kind, layer)
                data = dataset.node(kind, layer, index)
        except (LookupError, FileNotFoundError, InvalidInputError) as e:
            misses.append(f"{name}: {e}")
            continue
        return NodePage(dataset=name, kind=kind, layer=layer, index=index, data=to_json(data))
    raise NodeNotFound(f"no dataset holds {kind} {layer}/{index}: " + "; ".join(misses))

