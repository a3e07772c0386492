"""A real Azurite Blob service for tests: start on 127.0.0.1 on a free port, yield a connection string.

Binary: $AZURITE_BIN, else ``.venv/azurite/node_modules/.bin/azurite-blob`` under the repository
(``npm install --prefix .venv/azurite azurite``), else ``azurite-blob`` on PATH. Missing -> the
fixture fails (never skips) with the install command.

``AzuriteServer.stop()``/``start()`` restart it on the same port and data directory (for fault tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development account key (public, documented by Microsoft).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_HINT = (
    "Azurite (npm package 'azurite') is required for these tests: run "
    "`npm install --prefix .venv/azurite azurite` in the repository root (or `make test`, which does), "
    "or set AZURITE_BIN to an azurite-blob executable"
)


class AzuriteNotInstalled(RuntimeError):
    pass


def find_azurite_binary() -> Path:
    env = os.environ.get("AZURITE_BIN")
    if env:
        if not Path(env).is_file():
            raise AzuriteNotInstalled(f"AZURITE_BIN={env!r} is not a file. {INSTALL_HINT}")
        return Path(env)
    local = REPO_ROOT / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file():
        return local
    found = shutil.which("azurite-blob")
    if found:
        return Path(found)
    raise AzuriteNotInstalled(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AzuriteServer:
    """One Azurite blob service process; ``start``/``stop`` keep its port and data directory."""

    def __init__(self, data_dir: Path, binary: Path | None = None, port: int | None = None):
        self.binary = binary or find_azurite_binary()
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir / "azurite.log"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            "--blobHost", "127.0.0.1",
            "--blobPort", str(self.port),
            "--location", str(self.data_dir),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]
        log = self._log_path.open("ab")
        try:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Azurite exited with code {self._process.returncode}: {self._log_tail()}")
            try:
                httpx.get(f"{self.blob_endpoint}?comp=list", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not answer on port {self.port} within {timeout} s: {self._log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> "AzuriteServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def azurite_server() -> Iterator[AzuriteServer]:
    """Start Azurite in a temporary directory; stop it and remove the directory afterwards."""
    binary = find_azurite_binary()
    with tempfile.TemporaryDirectory(prefix="mechscope-azurite-") as tmp:
        with AzuriteServer(Path(tmp), binary=binary) as server:
            yield server


@pytest.fixture
def azurite() -> Iterator[AzuriteServer]:
    """A running Azurite blob service (``.connection_string``, ``.blob_endpoint``, ``.stop()``/``.start()``)."""
    try:
        binary = find_azurite_binary()
    except AzuriteNotInstalled as err:
        pytest.fail(str(err), pytrace=False)
    with tempfile.TemporaryDirectory(prefix="mechscope-azurite-") as tmp:
        with AzuriteServer(Path(tmp), binary=binary) as server:
            yield server
