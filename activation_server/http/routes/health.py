"""Liveness and readiness, outside /api/v1 and without auth (for load balancers and probes)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...server_schemas import Health
from ..security import readiness_detail
from ..service import ComputeService, service

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request, svc: ComputeService = Depends(service)):
    """Readiness: 200 once the model and SAEs are loaded, 503 before (or if loading failed, or
    while the compute processes restart after one died). Why loading failed (which may name
    local paths) is shown only to callers with the bearer token."""
    state = svc.state
    processes = state.engine_processes
    if state.status == "ready" and (processes is None or processes.ready):
        return Health(status="ok")
    if state.status == "ready":
        body = Health(status="loading", detail="a compute process exited; the compute processes are restarting")
    else:
        body = Health(status="failed" if state.status == "failed" else "loading",
                      detail=readiness_detail(state, request, svc.config.auth_token))
    return JSONResponse(status_code=503, content=body.model_dump(), headers={"Retry-After": "5"})
