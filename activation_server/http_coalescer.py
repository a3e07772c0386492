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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from .http_runner import ComputeRunner, Overloaded

Item = TypeVar("Item")


class Coalescer(Generic[Item]):
    """``await submit(item)`` runs ``run_many([... item ...])`` on the runner and returns its entry.

    ``size(item)`` is the item's share of one call's budget ``max_size`` (e.g. its prompt count); a
    call takes waiting items in arrival order while they fit (always at least one). At most
    ``runner.workers`` calls run at once."""

    def __init__(self, runner: ComputeRunner, run_many: Callable[[list[Item]], Sequence[Any]], *,
                 max_size: int, max_waiting: int, size: Callable[[Item], int] = lambda item: 1):
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.runner, self.run_many, self.max_size, self.max_waiting, self.size = \
            runner, run_many, max_size, max_waiting, size
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._draining = 0
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
        if self._draining < self.runner.workers:
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

    async def _drain(self) -> None:
        try:
            while batch := self._take():
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
                for (_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining -= 1
