"""The 422 answer to a request that fails validation, always serializable.

FastAPI's own answer echoes each error's ``input``: a request holding NaN or Infinity (which
Python's JSON reader accepts) or a lone UTF-16 surrogate (``"\\ud800"``) then fails a second time,
while its error is written out (strict JSON has no NaN; UTF-8 has no surrogates), and the client got
a 500. Here each error keeps ``loc``, ``msg``, ``type`` and ``ctx`` (the shape of
:class:`~.api_models.ErrorItem`), made safe to write; ``input`` is left out (the client sent it).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def safe_text(text: str) -> str:
    """``text`` with any lone surrogate written as its ``\\udXXX`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return safe_text(value)
    return safe_text(str(value))


def safe_error(error: dict) -> dict:
    item: dict[str, Any] = {"loc": [part if isinstance(part, int) else safe_text(str(part)) for part in error["loc"]],
                            "msg": safe_text(str(error.get("msg", ""))), "type": str(error.get("type", ""))}
    if ctx := error.get("ctx"):
        item["ctx"] = {str(k): _safe_value(v) for k, v in ctx.items()}
    return item


def install_validation_handler(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [safe_error(e) for e in exc.errors()]})
