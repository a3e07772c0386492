"""Coalescing concurrent requests of one kind into shared engine calls.

When several clients ask for node tables at once, running them one by one makes each wait for all
the others. Instead, requests that arrive while the compute workers are busy wait here, and a
worker takes all of them (up to a size budget) as one call of a batched function — for attribution,
one forward and one backward over every waiting prompt. Each request still gets its own result, or
its own error: the batched function returns one entry per item, an exception where that item
failed.

State lives on the event loop (a list of waiting items and a count of running drains), so it needs
no locks. Waiting is bounded: beyond ``max_waiting`` items new requests are refused with
:class:`Overloaded` (503 + Retry-After) instead of queueing without bound.

Gathering (``gather_s`` > 0, for one call at a time): a call that has just answered k requests
expects them back — clients of a debugger send their next request as soon as they have their
answer — so the next call waits, while fewer are waiting than it expects, until no request has
arrived for ``gather_s``. Without it, the first client back would start a call alone and the others
would wait for it, then run without it: calls of 1 and 7 alternating, each paying a pass's fixed
cost, every client waiting for two calls. A lone client is expected alone and never waits; once
nobody has come back within ``gather_s``, nobody is expected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from .runner import ComputeRunner, Overloaded

Item = TypeVar("Item")


class Coalescer(Generic[Item]):
    """``await submit(item)`` runs ``run_many([... item ...])`` on the runner and returns its entry.

    ``size(item)`` is the item's share of one call's budget ``max_size`` (e.g. its prompt count); a
    call takes waiting items in arrival order while they fit (always at least one). At most
    ``max_running`` calls run at once (default ``runner.workers``); ``gather_s`` (only with
    ``max_running`` 1) is the gathering gap of the module docstring."""

    def __init__(self, runner: ComputeRunner, run_many: Callable[[list[Item]], Sequence[Any]], *,
                 max_size: int, max_waiting: int, size: Callable[[Item], int] = lambda item: 1,
                 max_running: int | None = None, gather_s: float = 0.0):
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        max_running = runner.workers if max_running is None else max_running
        if gather_s and max_running != 1:
            raise ValueError("gathering needs one call at a time (max_running=1)")
        self.runner, self.run_many, self.max_size, self.max_waiting, self.size = \
            runner, run_many, max_size, max_waiting, size
        self.max_running, self.gather_s = max_running, gather_s
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._draining = 0
        self._expected = 0            # requests the next call expects to gather
        self._last_event = 0.0        # time.monotonic() of the last arrival or answer
        self._arrival: asyncio.Event | None = None
        self.calls = 0            # engine calls made (for tests and logs)
        self.items = 0            # items answered through them

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def submit(self, item: Item) -> Any:
        if len(self._waiting) >= self.max_waiting:
            raise Overloaded(self.runner.retry_after_s)
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._last_event = time.monotonic()
        if self._arrival is not None:
            self._arrival.set()
        if self._draining < self.max_running:
            self._draining += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[Item, asyncio.Future]]:
        taken, used = [], 0
        while self._waiting:
            item, future = self._waiting[0]
            if future.done():          # the client went away while waiting
                self._waiting.pop(0)
                continue
            cost = self.size(item)
            if taken and used + cost > self.max_size:
                break
            taken.append(self._waiting.pop(0))
            used += cost
        return taken

    async def _gather(self) -> None:
        """Wait while fewer requests wait (or fit in a call) than expected, until none has arrived
        for ``gather_s`` since the last arrival or answer."""
        while (self.gather_s and len(self._waiting) < self._expected
               and sum(self.size(item) for item, _ in self._waiting) < self.max_size):
            quiet_left = self._last_event + self.gather_s - time.monotonic()
            if quiet_left <= 0:
                return
            self._arrival = asyncio.Event()
            try:
                await asyncio.wait_for(self._arrival.wait(), quiet_left)
            except asyncio.TimeoutError:
                return
            finally:
                self._arrival = None

    async def _drain(self) -> None:
        try:
            while True:
                await self._gather()
                batch = self._take()
                if not batch:          # nobody came back within the gap: expect nobody
                    self._expected = 0
                    break
                items = [item for item, _ in batch]
                try:
                    results = await self.runner.run(self.run_many, items)
                except Exception as e:  # the whole call failed (e.g. Overloaded): every item gets the error
                    results = [e] * len(batch)
                except BaseException:   # cancelled (shutdown): nobody waits forever
                    for _, future in batch:
                        future.cancel()
                    raise
                self.calls += 1
                self.items += len(batch)
                self._expected = len(batch) + len(self._waiting)
                self._last_event = time.monotonic()
                for (_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining -= 1
