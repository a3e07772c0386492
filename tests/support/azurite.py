"""Run a real Azurite blob service on 127.0.0.1 for tests.

    with Azurite() as az:
        client = ContainerClient.from_connection_string(az.connection_string, "c", api_version=...)
        az.stop()   # simulate an outage
        az.start()  # same port, same data directory

Binary lookup: $AZURITE_BIN, else <repo>/.venv/azurite/node_modules/.bin/azurite-blob, else PATH.
Install with:  npm install --prefix .venv/azurite azurite
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from collections.abc import Iterator

import pytest

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development account key (public, documented by Microsoft).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_HINT = (
    "Azurite (npm package 'azurite') is needed for the Azure Blob tests but was not found. Install it with\n"
    "    npm install --prefix .venv/azurite azurite\n"
    "from the repository root (or run `make test`, which does it), or set AZURITE_BIN to an azurite-blob binary."
)


class AzuriteNotFoundError(RuntimeError):
    pass


def find_azurite_binary() -> str:
    from_env = os.environ.get("AZURITE_BIN")
    if from_env:
        if not Path(from_env).is_file():
            raise AzuriteNotFoundError(f"AZURITE_BIN={from_env!r} is not a file.\n{INSTALL_HINT}")
        return from_env
    local = REPO_ROOT / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file():
        return str(local)
    on_path = shutil.which("azurite-blob")
    if on_path:
        return on_path
    raise AzuriteNotFoundError(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    """An Azurite blob service on 127.0.0.1 with a temporary data directory."""

    def __init__(self, startup_timeout_s: float = 30.0):
        self._binary = find_azurite_binary()
        self._startup_timeout_s = startup_timeout_s
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    # ---- connection details -----------------------------------------------------------------

    @property
    def account_name(self) -> str:
        return ACCOUNT_NAME

    @property
    def account_key(self) -> str:
        return ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        return self.account_url

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    @property
    def data_dir(self) -> Path:
        assert self._tempdir is not None, "Azurite was never started"
        return Path(self._tempdir.name) / "data"

    # ---- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def start(self) -> None:
        """Start (or restart, on the same port and data directory) the blob service."""
        if self._process is not None and self._process.poll() is None:
            return
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="azurite-")
            self.data_dir.mkdir()
        if self.port is None:
            self.port = _free_port()
        log_path = Path(self._tempdir.name) / "azurite.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    self._binary,
                    "--blobHost", "127.0.0.1",
                    "--blobPort", str(self.port),
                    "--location", str(self.data_dir),
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--silent",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_until_answering(log_path)

    def stop(self) -> None:
        """Stop the service; data stays on disk for :meth:`start`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _wait_until_answering(self, log_path: Path) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        url = f"{self.account_url}?comp=list"
        while True:
            assert self._process is not None
            returncode = self._process.poll()
            if returncode is not None:
                self._process = None
                log = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Azurite exited with code {returncode} on port {self.port}:\n{log}")
            try:
                httpx.get(url, timeout=1.0)  # any HTTP answer (even 403) means it is serving
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Azurite did not answer on port {self.port} within {self._startup_timeout_s:.0f}s:\n"
                    + log_path.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)


AzuriteNotInstalled = AzuriteNotFoundError  # the name the autoencoder tests use


def running_azurite() -> Iterator[Azurite]:
    """Start Azurite, yield it, stop it. Fails — never skips — when Azurite is not installed."""
    try:
        server = Azurite()
    except AzuriteNotFoundError as err:
        pytest.fail(str(err), pytrace=False)
    with server:
        yield server


# A running Azurite blob service (``.connection_string``, ``.blob_endpoint``, ``.stop()`` / ``.start()``),
# for one test or shared by a test module.
azurite = pytest.fixture(running_azurite, name="azurite")
module_azurite = pytest.fixture(running_azurite, scope="module", name="azurite")
