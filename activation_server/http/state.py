"""What the server serves: the engine and node datasets, available once loaded. Loading may run in
a background thread so that /healthz answers at once and /readyz says when the server is ready.
The state is written once (loading -> ready | failed) and only read afterwards."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from .node_datasets import NodeDatasetSource
from .errors import NotReady

log = logging.getLogger("mechscope.server")

# what a loader returns: (engine, datasets), or (engine, datasets, EngineProcesses)
Loaded = tuple[object, Mapping[str, NodeDatasetSource]] | tuple[object, Mapping[str, NodeDatasetSource], object]


class ServerState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status = "loading"
        self.detail: str | None = "loading the model and SAEs"
        self.public_detail: str | None = None   # what unauthenticated callers see instead of detail, if set
        self.engine = None
        self.datasets: dict[str, NodeDatasetSource] = {}
        self.engine_processes = None   # EngineProcesses answering attribution requests, if any

    @classmethod
    def ready_with(cls, engine, datasets: Mapping[str, NodeDatasetSource] | None = None) -> "ServerState":
        state = cls()
        state._set_ready(engine, datasets or {})
        return state

    def _set_ready(self, engine, datasets: Mapping[str, NodeDatasetSource], engine_processes=None) -> None:
        with self._lock:
            self.engine, self.datasets, self.engine_processes = engine, dict(datasets), engine_processes
            self.status, self.detail = "ready", None

    def load_in_background(self, loader: Callable[[], Loaded]) -> threading.Thread:
        def run() -> None:
            try:
                loaded = loader()
            except Exception as e:  # reported by /readyz and the log; the process keeps serving /healthz
                log.exception("loading failed")
                with self._lock:
                    self.status, self.detail = "failed", f"loading failed: {e}"
                    self.public_detail = f"loading failed: {type(e).__name__} (the server log says why)"
                return
            self._set_ready(*loaded)
            log.info("ready")

        thread = threading.Thread(target=run, name="mechscope-loader", daemon=True)
        thread.start()
        return thread

    def require_engine(self):
        if self.status != "ready":
            raise NotReady(self.detail or "not ready")
        return self.engine
