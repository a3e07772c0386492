"""Serving the built neuron viewer (a single-page app) at /, or a short notice when it is not built."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

NOT_BUILT = ("The neuron viewer is not built. Build it with `cd neuron_viewer && npm ci && npm run build` "
             "and restart the server; the REST API is at /api/v1 (documentation at /docs).")


class SpaStaticFiles(StaticFiles):
    """Static files with index.html for unknown paths (client-side routes), except under /api/."""

    async def get_response(self, path: str, scope):
        if path == "api" or path.startswith("api/"):
            raise _api_miss(scope)
        try:
            return await super().get_response(path, scope)
        except StarletteHTTPException as e:
            if e.status_code != 404:
                raise
            return await super().get_response("index.html", scope)


def _api_miss(scope) -> HTTPException:
    """405 (with Allow) for an API path that exists with other methods, else 404: the mount at /
    matches every path, so the router never gets to say 405 itself."""
    routes = [r for r in getattr(scope.get("app"), "routes", ()) if not isinstance(r, Mount)]
    allowed = [m for m in _METHODS if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in routes)]
    if allowed:
        return HTTPException(status_code=405, detail="Method Not Allowed", headers={"Allow": ", ".join(allowed)})
    return HTTPException(status_code=404, detail="Not Found")


def mount_viewer(app: FastAPI, viewer_dir: Path | None) -> None:
    if viewer_dir is not None and (Path(viewer_dir) / "index.html").is_file():
        app.mount("/", SpaStaticFiles(directory=viewer_dir, html=True), name="viewer")
        return

    @app.get("/", include_in_schema=False)
    async def viewer_missing(request: Request):
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(f"<!doctype html><title>mechscope</title><h1>mechscope</h1><p>{NOT_BUILT}</p>"
                                '<p><a href="/docs">API documentation</a></p>')
        return JSONResponse({"detail": NOT_BUILT, "api": "/api/v1", "docs": "/docs"})
