"""A real uvicorn server on 127.0.0.1 for tests: in a background thread (any ASGI app, e.g. one
built around an in-memory engine) or as a ``mechscope serve`` subprocess.

    with LiveServer(app) as server:
        httpx.get(server.url + "/healthz")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn


class LiveServer:
    """Serves ``app`` with uvicorn on a free 127.0.0.1 port until the ``with`` block ends."""

    def __init__(self, app, *, log_level: str = "warning", start_timeout: float = 30.0):
        self.app, self.log_level, self.start_timeout = app, log_level, start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="on", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"uvicorn-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``python -m mechscope.activation_server.cli serve ARGS --port P`` as a subprocess; waits for
    /healthz, stops it (SIGTERM, then SIGKILL) on exit. ``output()`` returns what it printed."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, start_timeout: float = 60.0):
        self.args, self.start_timeout = args, start_timeout
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServeProcess":
        import tempfile
        self._log = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "mechscope.activation_server.cli", "serve", *self.args,
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"]
        self.process = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mechscope serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"mechscope serve did not answer /healthz:\n{self.output()}")
            time.sleep(0.2)

    def wait_ready(self, timeout: float = 60.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            response = httpx.get(self.url + "/readyz", timeout=2)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    def output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
