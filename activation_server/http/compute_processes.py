"""Attribution requests answered in worker processes, each with its own engine.

A Python process runs one thread of Python at a time. Building a node table is half torch ops
(which let other threads run) and half Python (hooks, autograd bookkeeping, the answer's rows), so
engine threads of one process mostly wait for each other and for the event loop: on 2 cores, one
server process used 1.6 of them under 8 clients. Worker processes have no such lock between them.
The server process keeps the HTTP side (parsing, limits, the cache, sending the JSON) and its own
engine for the other endpoints; :class:`EngineProcesses` sends each shared attribution call to the
workers, split into one chunk per worker, and waits for all of them (a call's requests are answered
together, so the next call gathers them again: see :class:`~.coalescer.Coalescer`).

Each worker loads the engine from the same :class:`~..engine.loading.EngineSpec` (the model is in
memory once per worker, plus once in the server process). Requests and answers cross as pickles;
typed errors keep their ``field`` (see :class:`mechscope.inference.errors.MechscopeError`).
A worker that dies (killed, out of memory) fails only the requests of the call it was in: they get
503, and the workers are started again in the background.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mechscope.inference.errors import MechscopeError

from ..engine.loading import EngineSpec, load_engine
from .errors import NotReady
from ..schemas import AttributionRequest

log = logging.getLogger("mechscope.server")

_ENGINE = None   # in a worker process: its engine, loaded once when the process starts
_WORKER_TRIM_BYTES = 32 << 20
"""Free heap a compute process keeps for reuse (the server process keeps 256 MB): with the weights
shared, the heap each of N processes holds on to is most of what they cost beyond one process."""


def chunks_by_prompts(requests: Sequence[AttributionRequest], n: int) -> list[list[AttributionRequest]]:
    """``min(n, len(requests))`` non-empty runs of consecutive requests with about equal prompt counts."""
    m = min(n, len(requests))
    total = sum(len(r.prompts) for r in requests)
    out: list[list[AttributionRequest]] = []
    current: list[AttributionRequest] = []
    done = 0
    for i, request in enumerate(requests):
        current.append(request)
        done += len(request.prompts)
        left, chunks_left = len(requests) - i - 1, m - len(out) - 1
        if chunks_left and (done >= total * (len(out) + 1) / m or left == chunks_left):
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


# --- in the worker processes ------------------------------------------------------------------------
def _exit_with(parent_pid: int) -> None:
    """Exit as soon as the server process is gone (killed without shutting its workers down). The
    server is not the parent (the forkserver is), so its pid is polled."""
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:   # the pid was reused by another user's process: the server is gone
            os._exit(0)
        time.sleep(0.5)


def _start_worker(spec: EngineSpec, torch_threads: int, log_level: str, parent_pid: int) -> None:
    global _ENGINE
    import torch

    threading.Thread(target=_exit_with, args=(parent_pid,), name="mechscope-parent-watch", daemon=True).start()
    from .process_tuning import keep_freed_memory, settle_garbage_collector
    from .config import LOG_FORMAT
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    torch.set_num_threads(torch_threads)
    # a SharedEngineSpec maps the server's weight files (one copy per machine); an EngineSpec loads its own
    _ENGINE = spec.load_engine() if hasattr(spec, "load_engine") else load_engine(spec, verbose=False)
    settle_garbage_collector()
    keep_freed_memory(trim_threshold=_WORKER_TRIM_BYTES)   # see _WORKER_TRIM_BYTES


def _portable(error: Exception) -> Exception:
    """``error`` as something that survives pickling: mechscope's typed errors as they are, anything
    else (logged here, with its traceback) as a RuntimeError naming it."""
    if isinstance(error, MechscopeError):
        return error
    log.error("attribution failed in compute process %d", os.getpid(), exc_info=error)
    return RuntimeError(f"{type(error).__name__}: {error}")


def _attribute_in_worker(requests: list[AttributionRequest]) -> list[bytes | Exception]:
    return [r if isinstance(r, bytes) else _portable(r) for r in _ENGINE.attribute_many_json(requests)]


def _worker_pid(hold_s: float) -> int:
    time.sleep(hold_s)   # keeps this worker busy so that the other calls of a round reach the others
    return os.getpid()


# --- in the server process -----------------------------------------------------------------------
def _context():  # type: ignore[no-untyped-def]
    """Compute processes are forked from a forkserver that has imported torch, the engine and the
    tokenizer (:mod:`.compute_preload`), so that memory is shared by all of them; where there is
    no forkserver (not POSIX), each is a fresh interpreter ("spawn"). Never "fork": the server
    process has threads."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__package__ + ".compute_preload"])
    return context


def _all_alive(pool: ProcessPoolExecutor) -> bool:
    """Whether the pool is unbroken and each of its processes is running (the executor keeps no
    public view of either)."""
    processes = pool._processes or {}
    return not pool._broken and len(processes) > 0 and all(p.is_alive() for p in list(processes.values()))


class EngineProcesses:
    """``processes`` worker processes answering attribution calls (see the module docstring).
    :meth:`attribute_json` blocks: call it from a thread, one call at a time."""

    def __init__(self, spec: EngineSpec, processes: int, torch_threads: int = 1, log_level: str = "info",
                 start_timeout_s: float = 300.0):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.spec, self.processes, self.torch_threads, self.log_level = spec, processes, torch_threads, log_level
        self.start_timeout_s = start_timeout_s
        self._lock = threading.Lock()          # one call at a time; guards _pool
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self.restarts = 0

    def start(self) -> None:
        """Start the workers and wait until each has loaded its engine."""
        with self._lock:
            self._pool = self._started_pool()

    def _started_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.processes, mp_context=_context(),
                                   initializer=_start_worker,
                                   initargs=(self.spec, self.torch_threads, self.log_level, os.getpid()))
        deadline = time.monotonic() + self.start_timeout_s
        seen: set[int] = set()
        try:
            while len(seen) < self.processes:   # every worker answers once: all have loaded
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.processes - len(seen)} compute processes did not start within "
                                       f"{self.start_timeout_s:.0f} s")
                futures = [pool.submit(_worker_pid, 0.05) for _ in range(self.processes)]
                seen |= {f.result(timeout=max(1.0, deadline - time.monotonic())) for f in futures}
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        log.info("%d compute processes ready (pids %s)", self.processes, " ".join(map(str, sorted(seen))))
        return pool

    def attribute_json(self, requests: Sequence[AttributionRequest]) -> list[bytes | Exception]:
        """Each request's JSON answer (or its error), in order: one chunk of the requests per worker,
        all at once."""
        with self._lock:
            pool = self._pool
            if pool is None:
                raise NotReady("the compute processes are restarting; retry shortly")
            chunks = chunks_by_prompts(requests, self.processes)
            try:
                futures = [pool.submit(_attribute_in_worker, chunk) for chunk in chunks]
                return [answer for f in futures for answer in f.result()]
            except BrokenProcessPool:
                log.error("a compute process exited unexpectedly; starting the compute processes again")
                self._pool = None
                self._restart_in_background(pool)
                raise NotReady("a compute process exited unexpectedly and is being restarted; retry shortly")

    def _restart_in_background(self, broken: ProcessPoolExecutor) -> None:
        def restart() -> None:
            broken.shutdown(wait=False, cancel_futures=True)
            while not self._closed:
                try:
                    pool = self._started_pool()
                except Exception:
                    log.exception("restarting the compute processes failed; trying again in 5 s")
                    time.sleep(5)
                    continue
                with self._lock:
                    if self._closed:
                        pool.shutdown(wait=False, cancel_futures=True)
                    else:
                        self._pool = pool
                        self.restarts += 1
                return

        threading.Thread(target=restart, name="mechscope-compute-restart", daemon=True).start()

    @property
    def ready(self) -> bool:
        """True while every worker is alive. A worker found dead (killed with no call in flight)
        starts the restart at once, unless a call holds the lock: that call finds the pool broken
        and restarts it itself."""
        pool = self._pool
        if pool is None:
            return False
        if _all_alive(pool):
            return True
        if self._lock.acquire(blocking=False):
            try:
                if self._pool is pool:
                    log.error("a compute process exited; starting the compute processes again")
                    self._pool = None
                    self._restart_in_background(pool)
            finally:
                self._lock.release()
        return False

    def worker_pids(self) -> list[int]:
        """The workers' process ids (empty while restarting)."""
        pool = self._pool
        return sorted(pool._processes) if pool is not None else []   # the executor keeps no public list

    def shutdown(self) -> None:
        """Stop the workers (after the call in progress, if any)."""
        self._closed = True
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if hasattr(self.spec, "cleanup"):   # shared weight files
            self.spec.cleanup()
