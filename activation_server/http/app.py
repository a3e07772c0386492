"""The activation server's FastAPI app: the engine's requests and results over HTTP.

``create_app(state, config)`` builds the app for a :class:`ServerState` (an engine and node
datasets, ready or loading): /healthz and /readyz outside; one router per resource under /api/v1
(bearer token when configured) — metadata, datasets, tokenizer, debugger, nodes (see
:mod:`.routes`); the built neuron viewer at /. Every route answers through the app's
:class:`~.service.ComputeService` (cache, bounded pool, coalescer).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ..server_schemas import MessageErrorBody
from .config import LOCALHOST_ORIGIN_REGEX, ServerConfig
from .docs import install_offline_docs
from .errors import install_error_handlers
from .routes import datasets, debugger, explanations, health, metadata, nodes, tokenizer
from .routes.metadata import version
from .security import BodySizeLimit, make_auth_dependency
from .service import ComputeService
from .state import ServerState
from .viewer import mount_viewer

API_PREFIX = "/api/v1"

_ERROR_RESPONSES = {
    400: {"model": MessageErrorBody, "description": "the body could not be read as JSON"},
    401: {"model": MessageErrorBody, "description": "missing or wrong bearer token (only with --auth-token)"},
    413: {"model": MessageErrorBody, "description": "request body over the size limit"},
    500: {"model": MessageErrorBody, "description": "unexpected error (logged under error_id)"},
    503: {"model": MessageErrorBody, "description": "not ready, or busy: retry after the Retry-After header"},
}


def create_app(state: ServerState, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    svc = ComputeService(state, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        svc.shutdown()

    app = FastAPI(title="mechscope activation server", version=version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None,   # served with local assets (docs.py)
                  description="A TDB-style circuit debugger for GPT-2-family models. Request and result shapes are "
                              "those of mechscope.activation_server.schemas; the README's Glossary defines the "
                              "vocabulary (component, node, write vector, objective, direct effect, ...).")
    app.state.service = svc
    app.state.runner, app.state.cache, app.state.attribution_coalescer = svc.runner, svc.cache, svc.coalescer
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(CORSMiddleware,
                       allow_origins=list(config.allowed_origins or ()),
                       allow_origin_regex=None if config.allowed_origins else LOCALHOST_ORIGIN_REGEX,
                       allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
                       expose_headers=["Retry-After"], max_age=600)
    app.include_router(health.router)
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(make_auth_dependency(config.auth_token))],
                    responses=_ERROR_RESPONSES)
    app.state.explanations = explanations.Explanations(state)
    for resource in (metadata, datasets, tokenizer, debugger, nodes, explanations):
        api.include_router(resource.router)
    app.include_router(api)
    install_offline_docs(app)
    mount_viewer(app, config.viewer_dir)
    return app
