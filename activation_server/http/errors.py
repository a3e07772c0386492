"""Error responses. User errors are 422 in FastAPI's validation-error shape
(``{"detail": [{"loc": ["body", ...], "msg": ..., "type": ...}]}``) whether they come from request
validation, a server limit or the engine (``InvalidInputError.field``); unexpected errors are logged
with an id and answered 500 with that id only — never a traceback."""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mechscope.inference.errors import InvalidInputError, MechscopeError

from .runner import Overloaded

log = logging.getLogger("mechscope.server")

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class LimitExceeded(InvalidInputError):
    """A request over one of the server's configured limits."""

    def __init__(self, message: str, *, field: str, limit: int):
        super().__init__(message, field=field)
        self.limit = limit


class NotReady(Exception):
    """The model and SAEs are still loading (or failed to load)."""


class NodeNotFound(Exception):
    pass


def field_loc(field: str | None, root: str = "body") -> list[str | int]:
    """``prompts[1].interventions[0].node`` -> ``['body', 'prompts', 1, 'interventions', 0, 'node']``."""
    loc: list[str | int] = [root]
    for name, index in _PATH_TOKEN.findall(field or ""):
        loc.append(int(index) if index else name)
    return loc


def validation_error(loc: list[str | int], msg: str, kind: str, ctx: dict | None = None) -> JSONResponse:
    item = {"loc": loc, "msg": msg, "type": kind}
    if ctx:
        item["ctx"] = ctx
    return JSONResponse(status_code=422, content={"detail": [item]})


def _retry_response(detail: str, retry_after_s: int) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry_after_s)})


def install_error_handlers(app: FastAPI) -> None:
    from .validation import install_validation_handler
    install_validation_handler(app)   # 422s that serialize whatever the request held (NaN, surrogates)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        return validation_error(field_loc(exc.field), str(exc), "limit_exceeded", {"limit": exc.limit})

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        return validation_error(field_loc(exc.field), str(exc), "invalid_input")

    @app.exception_handler(NodeNotFound)
    async def _not_found(request: Request, exc: NodeNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return _retry_response(str(exc), exc.retry_after_s)

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return _retry_response(str(exc), 5)

    @app.exception_handler(MechscopeError)
    async def _mechscope(request: Request, exc: MechscopeError) -> JSONResponse:
        from mechscope.datasets.stores import StoreUnavailableError
        if isinstance(exc, StoreUnavailableError):
            log.warning("dataset store unavailable: %s", exc)
            return _retry_response("a dataset store is unavailable; retry later", 10)
        return _internal(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal server error", "error_id": error_id})
