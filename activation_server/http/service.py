"""How a route gets its answer: from the LRU cache of identical requests, or computed off the
event loop — engine calls in the bounded thread pool (503 + Retry-After when it is full), node-table
requests through the coalescer, so that requests arriving together share one forward/backward pass
(in the compute processes when the server has them).

One :class:`ComputeService` per app (``app.state.service``); routes reach it with
``Depends(service)``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from ..schemas import AttributionRequest
from .coalescer import Coalescer
from .config import ServerConfig
from .limits import LimitChecker
from .runner import ComputeRunner, ResultCache
from .state import ServerState


def canonical_json(request: BaseModel) -> str:
    return json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


class ComputeService:
    def __init__(self, state: ServerState, config: ServerConfig):
        self.state, self.config = state, config
        self.runner = ComputeRunner(config.workers, config.max_queue, config.retry_after_s)
        self.cache = ResultCache(config.cache_size)
        # compute processes take one call at a time (split over all of them) and gather the clients
        # they answered; threads of this process run up to `workers` calls at once
        in_processes = config.compute_processes > 0
        self.coalescer = Coalescer(self.runner, self._attribute_batch, max_size=config.batch_prompts,
                                   max_waiting=config.workers + config.max_queue, size=lambda r: len(r.prompts),
                                   max_running=1 if in_processes else config.workers,
                                   gather_s=config.gather_ms / 1000 if in_processes else 0.0)

    def limits(self) -> LimitChecker:
        return LimitChecker(self.config.limits, self.state.require_engine().model.cfg)

    async def cached(self, endpoint: str, request: BaseModel, produce: Callable[[], Awaitable[bytes]],
                     cacheable: bool = True) -> Response:
        """The JSON answer for ``request``: from the cache of identical requests, or ``produce``d
        (and cached)."""
        self.state.require_engine()
        key = f"{endpoint}:{canonical_json(request)}"
        if cacheable and (hit := self.cache.get(key)) is not None:
            return json_response(hit)
        body = await produce()
        if cacheable:
            self.cache.put(key, body)
        return json_response(body)

    async def compute(self, endpoint: str, request: BaseModel, check: Callable[[LimitChecker], None],
                      work: Callable[[object], BaseModel], cacheable: bool = True) -> Response:
        """``check`` the limits, then run ``work(engine)`` in the pool; the result is serialized
        there too (off the event loop), and the JSON bytes are what the cache keeps."""
        engine = self.state.require_engine()

        def job() -> bytes:
            check(self.limits())
            return work(engine).model_dump_json().encode()

        return await self.cached(endpoint, request, lambda: self.runner.run(job), cacheable)

    async def attribute(self, request: AttributionRequest) -> Response:
        """A node table, through the coalescer (requests that arrive together share a pass)."""
        return await self.cached("attribution", request, lambda: self.coalescer.submit(request))

    def _attribute_batch(self, requests: list[AttributionRequest]) -> list[bytes | Exception]:
        """The coalescer's engine side: limits per request, then one shared call (in the compute
        processes when there are some), serialized results."""
        engine = self.state.require_engine()
        checker = self.limits()
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
            processes = self.state.engine_processes
            results = processes.attribute_json(batch) if processes is not None else engine.attribute_many_json(batch)
            for i, result in zip(runnable, results):
                out[i] = result
        return out  # type: ignore[return-value]

    def shutdown(self) -> None:
        self.runner.shutdown()
        if self.state.engine_processes is not None:
            self.state.engine_processes.shutdown()


def service(request: Request) -> ComputeService:
    """FastAPI dependency: the app's :class:`ComputeService`."""
    return request.app.state.service
