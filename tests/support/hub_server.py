"""A small, real HTTP server that serves files the way the Hugging Face hub does, for tests.

Files are served at ``/{repo_id}/resolve/{revision}/{filename}`` (GET and HEAD, as
huggingface_hub asks: metadata first, then the body) with ``Content-Length``, an ``ETag`` holding
the file's SHA-256 (as the hub does for LFS files), ``X-Repo-Commit`` (a commit hash made from the
revision name, also on 404s, as the hub sends it) and single-range ``Range`` support (206 +
``Content-Range``). Every request is recorded. Faults can be injected per file:
cut the connection after N bytes, answer an HTTP error status the first K times, require a bearer
token, send a wrong ETag, or ignore ``Range`` headers.

    with HubServer({"owner/model": {"config.json": b"{}"}}) as hub:
        hub.cut_connection("owner/model", "config.json", after_bytes=1)
        url = hub.url  # e.g. http://127.0.0.1:40123
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased


@dataclass
class _FileFaults:
    cut_after_bytes: int | None = None
    cuts_left: int = 0
    error_status: int = 500
    errors_left: int = 0
    etag: str | None = None


@dataclass
class _State:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> content
    faults: dict[str, _FileFaults] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    redirected: set[str] = field(default_factory=set)  # URL paths answered with a 302 to /cdn/...
    required_token: str | None = None
    ignore_range: bool = False
    cdn_url: str = ""   # a second port: another host to a client, as the hub's CDN is
    lock: threading.Lock = field(default_factory=threading.Lock)


def resolve_path(repo_id: str, filename: str, revision: str = "main") -> str:
    """The URL path the hub uses for one file."""
    return f"/{repo_id}/resolve/{revision}/{filename}"


class HubServer:
    """Hub-style file server on 127.0.0.1 (a free port), running in a background thread.

    ``repos`` maps a repo id to its files: a mapping ``filename -> bytes`` or a directory (every
    file below it, by relative path), served at revision ``main``; add more with :meth:`add_repo`.
    """

    def __init__(self, repos: Mapping[str, Mapping[str, bytes] | Path] | None = None):
        self._state = _State()
        for repo_id, files in (repos or {}).items():
            self.add_repo(repo_id, files)
        self._server: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- content ---------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Mapping[str, bytes] | Path, revision: str = "main") -> None:
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        with self._state.lock:
            for filename, content in files.items():
                self._state.files[resolve_path(repo_id, filename, revision)] = bytes(content)

    # -- faults ----------------------------------------------------------------------------------

    def _faults(self, repo_id: str, filename: str, revision: str) -> _FileFaults:
        return self._state.faults.setdefault(resolve_path(repo_id, filename, revision), _FileFaults())

    def cut_connection(
        self, repo_id: str, filename: str, *, after_bytes: int, times: int = 1, revision: str = "main"
    ) -> None:
        """On the next ``times`` requests of the file, close the connection after ``after_bytes``
        bytes of the body (the headers still announce the full length)."""
        with self._state.lock:
            faults = self._faults(repo_id, filename, revision)
            faults.cut_after_bytes, faults.cuts_left = after_bytes, times

    def fail(self, repo_id: str, filename: str, *, status: int = 500, times: int = 1, revision: str = "main") -> None:
        """Answer the next ``times`` requests of the file with HTTP ``status``."""
        with self._state.lock:
            faults = self._faults(repo_id, filename, revision)
            faults.error_status, faults.errors_left = status, times

    def set_etag(self, repo_id: str, filename: str, etag: str, *, revision: str = "main") -> None:
        """Send ``etag`` (unquoted) instead of the file's real SHA-256."""
        with self._state.lock:
            self._faults(repo_id, filename, revision).etag = etag

    def redirect_to_cdn(self, repo_id: str, filename: str, *, revision: str = "main") -> None:
        """Serve the file like the hub serves an LFS file: a 302 to ``/cdn{path}`` that carries the
        SHA-256 in ``X-Linked-Etag`` (and a git-style ETag), while the CDN answer's ETag is an MD5."""
        with self._state.lock:
            self._state.redirected.add(resolve_path(repo_id, filename, revision))

    def require_token(self, token: str | None) -> None:
        """Answer 401 to every request without ``Authorization: Bearer {token}`` (None: no check)."""
        with self._state.lock:
            self._state.required_token = token

    def ignore_range_requests(self, ignore: bool = True) -> None:
        """Answer 200 with the whole file even when a ``Range`` is asked for."""
        with self._state.lock:
            self._state.ignore_range = ignore

    # -- inspection ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def requests_for(self, repo_id: str, filename: str, revision: str = "main") -> list[RecordedRequest]:
        path = resolve_path(repo_id, filename, revision)
        return [r for r in self.requests if r.path == path]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("HubServer is not running: use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HubServer:
        handler = type("BoundHubHandler", (_HubHandler,), {"state": self._state})
        self._server = _QuietThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._cdn = _QuietThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._state.cdn_url = "http://127.0.0.1:%d" % self._cdn.server_address[1]
        self._threads = [threading.Thread(target=s.serve_forever, args=(0.02,), name="hub-server", daemon=True)
                         for s in (self._server, self._cdn)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            for server, thread in zip((self._server, self._cdn), self._threads):
                server.shutdown()
                server.server_close()
                thread.join(timeout=5)
            self._server = self._cdn = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (e.g. closing an idle keep-alive connection) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State  # set on the per-server subclass

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_GET(self) -> None:
        self._serve("GET")

    def _serve(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        self._commit = _commit_of(path)
        self._head = method == "HEAD"
        from_cdn = path.startswith("/cdn/")
        file_path = path.removeprefix("/cdn") if from_cdn else path
        headers = {name.lower(): value for name, value in self.headers.items()}
        state = self.state
        with state.lock:
            state.requests.append(RecordedRequest(method, path, headers))
            content = state.files.get(file_path)
            faults = state.faults.get(file_path, _FileFaults()) if not from_cdn else _FileFaults()
            redirect = file_path in state.redirected and not from_cdn
            token_ok = state.required_token is None or headers.get("authorization") == f"Bearer {state.required_token}"
            ignore_range = state.ignore_range
            error = None
            if faults.errors_left > 0:
                faults.errors_left -= 1
                error = faults.error_status
            cut_after = None
            if faults.cuts_left > 0 and content is not None and method == "GET":
                faults.cuts_left -= 1
                cut_after = faults.cut_after_bytes
        if not token_ok:
            return self._send_status(401, "Invalid credentials")
        if error is not None:
            return self._send_status(error, "Injected failure")
        if content is None:
            return self._send_status(404, "Entry not found", error_code="EntryNotFound")
        sha256 = faults.etag or hashlib.sha256(content).hexdigest()
        if redirect:
            return self._send_redirect(f"{state.cdn_url}/cdn{file_path}", sha256, len(content))
        etag = hashlib.md5(content).hexdigest() if from_cdn else sha256
        self._send_file(content, etag, headers, ignore_range, cut_after)

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if getattr(self, "_commit", None):
            self.send_header("X-Repo-Commit", self._commit)

    def _send_redirect(self, location: str, sha256: str, size: int) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("ETag", f'"{hashlib.sha1(sha256.encode()).hexdigest()}"')
        self.send_header("X-Linked-Etag", f'"{sha256}"')
        self.send_header("X-Linked-Size", str(size))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_status(self, status: int, message: str, error_code: str | None = None) -> None:
        body = message.encode()
        self.send_response(status)
        if error_code:   # as the hub does, so that huggingface_hub can tell a missing file from a missing repo
            self.send_header("X-Error-Code", error_code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _send_file(
        self, content: bytes, etag: str, headers: dict[str, str], ignore_range: bool, cut_after: int | None
    ) -> None:
        start, end = 0, len(content) - 1
        match = _RANGE.fullmatch(headers.get("range", "").strip())
        partial = match is not None and not ignore_range
        if partial:
            start = int(match.group(1))
            end = min(int(match.group(2)), end) if match.group(2) else end
            if start >= len(content) or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(content)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = content[start : end + 1]
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(content)}")
        self.end_headers()
        if self._head:
            return
        if cut_after is not None:
            self.wfile.write(body[:cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def _commit_of(path: str) -> str | None:
    """A stable 40-hex commit hash for the revision in a ``/{repo}/resolve/{revision}/...`` path."""
    parts = path.removeprefix("/cdn").split("/")
    if "resolve" not in parts or parts.index("resolve") + 1 >= len(parts):
        return None
    revision = parts[parts.index("resolve") + 1]
    return revision if re.fullmatch(r"[0-9a-f]{40}", revision) else hashlib.sha1(revision.encode()).hexdigest()
