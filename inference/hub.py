"""Download files of Hugging Face hub repos into a local on-disk cache (no huggingface_hub needed).

A file's URL is ``{endpoint}/{repo_id}/resolve/{revision}/{filename}``. The endpoint is the
``endpoint`` argument, else the environment variable ``MECHSCOPE_HUB_ENDPOINT``, else
``HF_ENDPOINT``, else ``https://huggingface.co``.

Cache layout (root: ``cache_dir`` argument, else ``MECHSCOPE_CACHE_DIR``, else ``~/.cache/mechscope``)::

    {root}/hub/{owner}--{name}/{revision}/{filename}            downloaded files (the "snapshot")
    {root}/hub/{owner}--{name}/{revision}/{filename}.part       a download in progress
    {root}/hub/{owner}--{name}/.no_exist/{revision}/{filename}  an optional file the repo lacks

A file that is in its snapshot directory is complete: downloads go to ``.part`` and are renamed into
place only after their size (``Content-Length``) and, when the hub names one (the ``ETag`` or
``X-Linked-Etag`` of an LFS file), their SHA-256 are checked. A call whose files are all cached
sends no request, so it works offline. A broken transfer is retried with exponential backoff and
resumed from the ``.part`` size with an HTTP ``Range`` request (a server that answers 200 instead
of 206 is handled by starting over).

Revisions are cached by name: a branch such as ``main`` is not re-checked once its files are cached.
Pass a commit hash as ``revision`` to pin exact contents.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
from tqdm import tqdm

from .errors import CheckpointError, ChecksumError, DownloadError, InvalidInputError

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV_VARS = ("MECHSCOPE_HUB_ENDPOINT", "HF_ENDPOINT")
CACHE_DIR_ENV_VAR = "MECHSCOPE_CACHE_DIR"
TOKEN_ENV_VAR = "HF_TOKEN"
DEFAULT_CACHE_DIR = Path("~/.cache/mechscope")

_REPO_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,96}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HubFileNotFoundError(CheckpointError):
    """The hub has no such file (HTTP 404) in the repo at that revision."""

    def __init__(self, message: str, *, repo_id: str, revision: str, filenames: tuple[str, ...]):
        super().__init__(message)
        self.repo_id = repo_id
        self.revision = revision
        self.filenames = filenames


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed transfer is tried in total, and how long to wait between tries.

    The wait doubles after each failure: ``initial_delay_s``, ``2 * initial_delay_s``, ... capped
    at ``max_delay_s``.
    """

    attempts: int = 4
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise InvalidInputError(f"attempts must be an integer >= 1, got {self.attempts!r}", field="attempts")
        for name in ("initial_delay_s", "max_delay_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}", field=name)

    def delay_after(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        return min(self.max_delay_s, self.initial_delay_s * 2 ** (failures - 1))


# ---------------------------------------------------------------------------------------------
# Validation, URLs and cache paths
# ---------------------------------------------------------------------------------------------


def _validate_repo_id(repo_id: object) -> str:
    if not isinstance(repo_id, str):
        raise InvalidInputError(f"repo_id must be a string like 'owner/name', got {repo_id!r}", field="repo_id")
    segments = repo_id.split("/")
    valid = 1 <= len(segments) <= 2 and all(
        _REPO_SEGMENT.fullmatch(s) and s not in (".", "..") and "--" not in s and ".." not in s for s in segments
    )
    if not valid:
        raise InvalidInputError(
            f"invalid repo_id {repo_id!r}: expected 'name' or 'owner/name' made of letters, digits, "
            "'-', '_' and '.' (no '..', '--', backslashes or absolute paths)",
            field="repo_id",
        )
    return repo_id


def _validate_relative_path(value: object, field: str) -> str:
    """A '/'-separated relative path that cannot escape the directory it is joined to."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{field} must be a non-empty string, got {value!r}", field=field)
    problem = None
    if "\\" in value:
        problem = "contains a backslash"
    elif "\x00" in value:
        problem = "contains a NUL character"
    elif value.startswith("/") or re.match(r"[A-Za-z]:", value):
        problem = "is an absolute path"
    elif any(segment in ("", ".", "..") for segment in value.split("/")):
        problem = "has an empty, '.' or '..' path segment"
    if problem:
        raise InvalidInputError(f"invalid {field} {value!r}: it {problem}", field=field)
    return value


def _resolve_endpoint(endpoint: str | None) -> str:
    field = "endpoint"
    if endpoint is None:
        endpoint = DEFAULT_ENDPOINT
        for name in ENDPOINT_ENV_VARS:
            if os.environ.get(name):
                endpoint, field = os.environ[name], name
                break
    if not isinstance(endpoint, str):
        raise InvalidInputError(f"endpoint must be a URL string, got {endpoint!r}", field=field)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(
            f"invalid hub endpoint {endpoint!r} (from {field}): expected an http:// or https:// URL", field=field
        )
    return endpoint.rstrip("/")


def hub_file_url(repo_id: str, filename: str, *, revision: str = "main", endpoint: str | None = None) -> str:
    """The URL of one file of a hub repo: ``{endpoint}/{repo_id}/resolve/{revision}/{filename}``."""
    _validate_repo_id(repo_id)
    _validate_relative_path(filename, "filename")
    _validate_relative_path(revision, "revision")
    return (
        f"{_resolve_endpoint(endpoint)}/{repo_id}/resolve/"
        f"{quote(revision, safe='')}/{quote(filename, safe='/')}"
    )


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_DIR_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(cache_dir).expanduser() / "hub"


def _repo_cache_dir(repo_id: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    return _cache_root(cache_dir) / repo_id.replace("/", "--")


def hub_snapshot_dir(
    repo_id: str, *, revision: str = "main", cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where :func:`download_hub_files` puts the files of ``repo_id`` at ``revision`` (may not exist)."""
    _validate_repo_id(repo_id)
    _validate_relative_path(revision, "revision")
    return _repo_cache_dir(repo_id, cache_dir) / quote(revision, safe="")


def _absent_marker(repo_id: str, revision: str, filename: str, cache_dir) -> Path:
    return _repo_cache_dir(repo_id, cache_dir) / ".no_exist" / quote(revision, safe="") / filename


# ---------------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WantedFile:
    """One entry of a download request: the first of ``candidates`` that the repo has."""

    candidates: tuple[str, ...]
    required: bool


class _Retryable(Exception):
    """A failed attempt worth trying again. ``network`` is True when no HTTP answer came back."""

    def __init__(self, reason: str, *, network: bool):
        super().__init__(reason)
        self.network = network


@dataclass(frozen=True)
class _Received:
    total_bytes: int | None
    sha256: str | None


def _sha256_from_headers(response: httpx.Response) -> str | None:
    """The SHA-256 the hub names for an LFS file: ``X-Linked-Etag`` anywhere in the redirect chain,
    else the ``ETag`` of the first answer (the hub's own; a CDN's ETag means something else)."""
    chain = [*response.history, response]
    candidates = [r.headers.get("x-linked-etag") for r in chain] + [chain[0].headers.get("etag")]
    for value in candidates:
        if value:
            value = value.strip().removeprefix("W/").strip('"').lower()
            if _SHA256_HEX.fullmatch(value):
                return value
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _ProgressBar:
    """A per-file tqdm bar in bytes, created only once a body starts (so a 404 shows nothing)."""

    def __init__(self, description: str, enabled: bool):
        self._description = description
        self._enabled = enabled
        self._bar: tqdm | None = None

    def start(self, total: int | None, done: int) -> None:
        if self._bar is None:
            self._bar = tqdm(
                desc=self._description, total=total, initial=done, unit="B", unit_scale=True,
                unit_divisor=1024, disable=None if self._enabled else True,  # None: off when not a TTY
            )
        else:  # a retry: show where it starts again
            self._bar.total = total
            self._bar.reset()
            self._bar.update(done)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _HubFetcher:
    """Downloads single files of one repo at one revision, with retries, resume and checks."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        repo_id: str,
        revision: str,
        endpoint: str,
        token_given: bool,
        retry: RetryPolicy,
        progress: bool,
        requested: Sequence[str],
    ):
        self._client = client
        self._repo_id = repo_id
        self._revision = revision
        self._endpoint = endpoint
        self._token_given = token_given
        self._retry = retry
        self._progress = progress
        self._requested = requested

    def fetch(self, filename: str, dest: Path) -> bool:
        """Download ``filename`` to ``dest``. False when the repo has no such file (404)."""
        url = hub_file_url(self._repo_id, filename, revision=self._revision, endpoint=self._endpoint)
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        bar = _ProgressBar(filename, self._progress)
        failures = 0
        try:
            while True:
                try:
                    received = self._attempt(url, filename, part, bar)
                    break
                except _Retryable as failure:
                    failures += 1
                    if failures >= self._retry.attempts:
                        raise self._gave_up(filename, url, failure, failures) from failure
                    time.sleep(self._retry.delay_after(failures))
        finally:
            bar.close()
        if received is None:
            return False
        sha256 = received.sha256
        if sha256 is not None:
            actual = _file_sha256(part)
            if actual != sha256:
                part.unlink(missing_ok=True)
                raise ChecksumError(
                    f"downloaded {filename!r} of hub repo {self._repo_id!r} (revision {self._revision!r}) "
                    f"from {url} has sha256 {actual}, but the hub's ETag says {sha256}; the corrupt "
                    "download was deleted, try again"
                )
        os.replace(part, dest)
        return True

    def _attempt(self, url: str, filename: str, part: Path, bar: _ProgressBar) -> _Received | None:
        """One GET, appending to ``part`` when resuming. None on 404; raises _Retryable to retry."""
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 404:
                    return None
                if status in (401, 403):
                    raise self._access_denied(filename, url, status)
                if status == 416:  # our .part is not a prefix of what the server has now
                    part.unlink(missing_ok=True)
                    raise _Retryable(f"server could not resume at byte {offset} (HTTP 416)", network=False)
                if status == 429 or status >= 500:
                    raise _Retryable(f"server answered HTTP {status}", network=False)
                if status not in (200, 206):
                    raise DownloadError(
                        f"unexpected HTTP {status} for {filename!r} of hub repo {self._repo_id!r} "
                        f"(revision {self._revision!r}) from {url}"
                    )
                if status == 206:
                    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
                    if match is None or int(match.group(1)) != offset:
                        part.unlink(missing_ok=True)
                        where = response.headers.get("content-range")
                        raise _Retryable(f"server resumed at the wrong place (Content-Range {where!r})", network=False)
                    total = None if match.group(3) == "*" else int(match.group(3))
                    mode = "ab"
                else:  # a full answer, possibly to a Range request: start over
                    offset, mode = 0, "wb"
                    length = response.headers.get("content-length")
                    encoded = response.headers.get("content-encoding", "identity") != "identity"
                    total = int(length) if length and length.isdigit() and not encoded else None
                received = _Received(total_bytes=total, sha256=_sha256_from_headers(response))
                bar.start(total, offset)
                with part.open(mode) as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        bar.update(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}", network=True) from exc
        size = part.stat().st_size
        if received.total_bytes is not None and size != received.total_bytes:
            if size < received.total_bytes:
                raise _Retryable(f"transfer ended at {size} of {received.total_bytes} bytes", network=True)
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"downloaded {filename!r} of hub repo {self._repo_id!r} has {size} bytes, more than the "
                f"{received.total_bytes} the server announced; the download was deleted"
            )
        return received

    def _gave_up(self, filename: str, url: str, failure: _Retryable, attempts: int) -> DownloadError:
        files = ", ".join(self._requested)
        cause = "could not reach the hub" if failure.network else "the hub kept failing"
        return DownloadError(
            f"could not download {filename!r} of hub repo {self._repo_id!r} (revision {self._revision!r}) "
            f"from {self._endpoint} ({url}): {cause} after {attempts} attempts, last error: {failure}. "
            f"To work offline, download the files ({files}) elsewhere and pass a local directory "
            "containing them instead of the repo id, e.g. load_model(\"/path/to/dir\") for a directory "
            "with config.json and model.safetensors; or set MECHSCOPE_HUB_ENDPOINT to a reachable "
            "hub mirror. Files already downloaded stay cached and partial downloads resume."
        )

    def _access_denied(self, filename: str, url: str, status: int) -> DownloadError:
        if self._token_given:
            advice = "the token was rejected or has no access to this repo: check the token and the repo id"
        else:
            advice = (
                "the repo may not exist, or be private or gated: check the repo id, or pass "
                f"token=... (a Hugging Face access token) or set {TOKEN_ENV_VAR}"
            )
        return DownloadError(
            f"HTTP {status} for {filename!r} of hub repo {self._repo_id!r} (revision {self._revision!r}) "
            f"from {url}: {advice}"
        )


def _plan(
    filenames: Iterable[str], optional: Iterable[str], alternatives: Iterable[Sequence[str]]
) -> list[_WantedFile]:
    def names(value: object, field: str) -> list[str]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise InvalidInputError(f"{field} must be a list of file names, got {value!r}", field=field)
        return [_validate_relative_path(name, field) for name in value]

    plan = [_WantedFile((name,), required=True) for name in names(filenames, "filenames")]
    if isinstance(alternatives, (str, bytes)) or not isinstance(alternatives, Iterable):
        raise InvalidInputError(
            f"alternatives must be a list of tuples of file names, got {alternatives!r}", field="alternatives"
        )
    for group in alternatives:
        candidates = tuple(names(group, "alternatives"))
        if not candidates:
            raise InvalidInputError("alternatives must not contain an empty group", field="alternatives")
        plan.append(_WantedFile(candidates, required=True))
    plan += [_WantedFile((name,), required=False) for name in names(optional, "optional")]
    return plan


def download_hub_files(
    repo_id: str,
    filenames: Sequence[str] = (),
    *,
    revision: str = "main",
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    optional: Sequence[str] = (),
    alternatives: Sequence[Sequence[str]] = (),
    token: str | None = None,
    progress: bool = True,
    retry: RetryPolicy = RetryPolicy(),
    timeout_s: float = 30.0,
) -> Path:
    """Make sure files of hub repo ``repo_id`` are in the local cache; return their directory.

    - ``filenames``: files that must exist (404 raises :class:`HubFileNotFoundError`, a
      :class:`CheckpointError`).
    - ``alternatives``: groups such as ``("model.safetensors", "pytorch_model.bin")``; the first file
      of each group that the repo has is fetched (none cached: tried in order; none found: raises).
      A group is satisfied without any request when one of its files is already cached.
    - ``optional``: fetched when the repo has them; a 404 is remembered in the cache, so later calls
      do not ask again.

    Callers find out what they got by checking which files exist in the returned directory.
    ``token`` (default: env ``HF_TOKEN``) is sent as a bearer token. Network failures and HTTP
    5xx/429 are retried per ``retry`` and then raise :class:`DownloadError`, as do 401/403.
    """
    _validate_repo_id(repo_id)
    _validate_relative_path(revision, "revision")
    endpoint = _resolve_endpoint(endpoint)
    plan = _plan(filenames, optional, alternatives)
    snapshot = hub_snapshot_dir(repo_id, revision=revision, cache_dir=cache_dir)
    snapshot.mkdir(parents=True, exist_ok=True)

    token = token if token is not None else os.environ.get(TOKEN_ENV_VAR) or None
    headers = {"User-Agent": "mechscope"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(headers=headers, follow_redirects=True, timeout=timeout_s) as client:
        fetcher = _HubFetcher(
            client,
            repo_id=repo_id,
            revision=revision,
            endpoint=endpoint,
            token_given=bool(token),
            retry=retry,
            progress=progress,
            requested=[wanted.candidates[0] for wanted in plan if wanted.required],
        )
        for wanted in plan:
            if any((snapshot / name).is_file() for name in wanted.candidates):
                continue
            if not wanted.required and _absent_marker(repo_id, revision, wanted.candidates[0], cache_dir).exists():
                continue
            if not any(fetcher.fetch(name, snapshot / name) for name in wanted.candidates):
                _handle_missing(wanted, repo_id, revision, endpoint, cache_dir)
    return snapshot


def _handle_missing(wanted: _WantedFile, repo_id: str, revision: str, endpoint: str, cache_dir) -> None:
    if not wanted.required:
        marker = _absent_marker(repo_id, revision, wanted.candidates[0], cache_dir)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return
    if len(wanted.candidates) == 1:
        what = f"no file {wanted.candidates[0]!r}"
    else:
        what = "none of the files " + ", ".join(repr(name) for name in wanted.candidates)
    raise HubFileNotFoundError(
        f"hub repo {repo_id!r} at revision {revision!r} on {endpoint} has {what} (HTTP 404): "
        "check the repo id, the revision and the file name",
        repo_id=repo_id,
        revision=revision,
        filenames=wanted.candidates,
    )
