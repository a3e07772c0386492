"""Bearer-token auth for /api/ routes and an early request-body size limit (413)."""

from __future__ import annotations

import hmac
import json

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Only when the server was started with --auth-token (or MECHSCOPE_AUTH_TOKEN).")


def make_auth_dependency(token: str | None):
    """A FastAPI dependency that demands ``Authorization: Bearer <token>`` when ``token`` is set."""
    expected = token.encode() if token else None

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> None:
        if expected is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    return require_token


def readiness_detail(state, request, token: str | None) -> str | None:
    """/readyz's detail: why loading failed names local paths, so callers without the bearer token
    (everyone, when the server has none) see only the kind of error; the log has the rest."""
    public = getattr(state, "public_detail", None)
    if public is None:
        return state.detail
    header = request.headers.get("authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return state.detail
    return public


class BodySizeLimit:
    """ASGI middleware: answer 413 when a request body exceeds ``max_bytes`` — at once from
    Content-Length, or as soon as a streamed (chunked) body grows past the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await self._reject(send, 400, b'{"detail":"invalid Content-Length"}')
                if declared > self.max_bytes:
                    return await self._reject(send, 413, self._message())
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI passes HTTPExceptions raised while reading through
                    raise HTTPException(status_code=413, detail=self._text())
            return message

        await self.app(scope, counting_receive, send)

    def _text(self) -> str:
        return f"request body too large: the limit is {self.max_bytes} bytes"

    def _message(self) -> bytes:
        return json.dumps({"detail": self._text()}).encode()

    @staticmethod
    async def _reject(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
