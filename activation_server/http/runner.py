"""Running engine calls off the event loop: a bounded thread pool with a bounded wait queue (excess
requests are refused at once rather than piling up), and an LRU cache of identical requests.

These two objects are the server's only shared mutable state; both are thread-safe."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """Every worker is busy and the wait queue is full."""

    def __init__(self, retry_after_s: int):
        super().__init__("the server is busy; retry later")
        self.retry_after_s = retry_after_s


class ComputeRunner:
    """At most ``workers`` calls run at once and at most ``max_queue`` wait; more are refused."""

    def __init__(self, workers: int, max_queue: int, retry_after_s: int = 2):
        self.workers, self.max_queue, self.retry_after_s = workers, max_queue, retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mechscope-compute")
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting

    @property
    def admitted(self) -> int:
        with self._lock:
            return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.max_queue:
                raise Overloaded(self.retry_after_s)
            self._admitted += 1

    def _release(self, _future: Any = None) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        self._admit()
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        # Released when the work finishes, even if the client went away and the await was cancelled.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ResultCache:
    """A thread-safe LRU map from a request key to its (immutable) result."""

    def __init__(self, size: int):
        self.size = size
        self._items: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
