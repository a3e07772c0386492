"""Files of Hugging Face hub repos, through ``huggingface_hub`` and its cache.

Downloads go into the Hugging Face cache that transformers, TransformerLens and SAELens share (so
a ``gpt2`` one of them fetched is not fetched again): ``cache_dir``/hub when given, else
``$MECHSCOPE_CACHE_DIR``/hub, else huggingface_hub's own (``$HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``). huggingface_hub resumes broken transfers (``Range``), shows progress
bars and honours ``HF_HUB_OFFLINE`` and ``HF_TOKEN``. The endpoint is the ``endpoint`` argument, else
``$MECHSCOPE_HUB_ENDPOINT``, else ``$HF_ENDPOINT``, else ``https://huggingface.co``.

On top of it: a call whose files are all cached (or known absent) sends no request, so it works
offline and a branch such as ``main`` is not re-checked once cached (pass a commit hash to pin
exact contents); alternatives (the first of several files the repo has) and optional files; a
freshly downloaded LFS file's SHA-256 is checked against the hub's ETag; failed attempts (network,
HTTP 5xx/429) are retried per :class:`RetryPolicy`; and errors are mechscope's typed errors, the
offline one saying how to use a local directory instead.
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

from .errors import CheckpointError, ChecksumError, DownloadError, InvalidInputError

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV_VARS = ("MECHSCOPE_HUB_ENDPOINT", "HF_ENDPOINT")
CACHE_DIR_ENV_VAR = "MECHSCOPE_CACHE_DIR"
TOKEN_ENV_VAR = "HF_TOKEN"

_REPO_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,96}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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
    at ``max_delay_s``. One try is the default: within it huggingface_hub already retries network
    errors and HTTP 5xx/429 with backoff (5 retries over about 23 s) and resumes a body cut
    mid-transfer; more attempts add whole tries on top.
    """

    attempts: int = 1
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


# --- validation, URLs and cache paths ---------------------------------------------------------------
def _validate_repo_id(repo_id: object) -> str:
    if not isinstance(repo_id, str):
        raise InvalidInputError(f"repo_id must be a string like 'owner/name', got {repo_id!r}", field="repo_id")
    segments = repo_id.split("/")
    valid = 1 <= len(segments) <= 2 and all(
        _REPO_SEGMENT.fullmatch(s) and s not in (".", "..") and "--" not in s and ".." not in s for s in segments)
    if not valid:
        raise InvalidInputError(
            f"invalid repo_id {repo_id!r}: expected 'name' or 'owner/name' made of letters, digits, "
            "'-', '_' and '.' (no '..', '--', backslashes or absolute paths)", field="repo_id")
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
            f"invalid hub endpoint {endpoint!r} (from {field}): expected an http:// or https:// URL", field=field)
    return endpoint.rstrip("/")


def hub_file_url(repo_id: str, filename: str, *, revision: str = "main", endpoint: str | None = None) -> str:
    """The URL of one file of a hub repo: ``{endpoint}/{repo_id}/resolve/{revision}/{filename}``."""
    _validate_repo_id(repo_id)
    _validate_relative_path(filename, "filename")
    _validate_relative_path(revision, "revision")
    return f"{_resolve_endpoint(endpoint)}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename, safe='/')}"


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache used: ``cache_dir``/hub, ``$MECHSCOPE_CACHE_DIR``/hub, else
    huggingface_hub's own (``$HF_HUB_CACHE``)."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_DIR_ENV_VAR) or None
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "hub"
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE)


def _repo_folder(repo_id: str, cache_dir) -> Path:
    return hub_cache_dir(cache_dir) / ("models--" + repo_id.replace("/", "--"))


def hub_snapshot_dir(repo_id: str, *, revision: str = "main", cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The snapshot directory of ``repo_id`` at ``revision`` in the cache (the commit a branch
    points to once it has been downloaded; may not exist)."""
    _validate_repo_id(repo_id)
    _validate_relative_path(revision, "revision")
    folder = _repo_folder(repo_id, cache_dir)
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    return folder / "snapshots" / commit


# --- one file --------------------------------------------------------------------------------------
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


def _http_status(error: BaseException) -> int | None:
    """The HTTP status of the hub error in ``error``'s chain of causes, if any."""
    from huggingface_hub.errors import HfHubHTTPError
    seen = error
    while seen is not None:
        if isinstance(seen, HfHubHTTPError) and seen.response is not None:
            return seen.response.status_code
        seen = seen.__cause__ or seen.__context__
    return None


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client errors huggingface_hub lets through (httpx, or httpx2 in huggingface_hub 2)."""
    import httpx
    errors: list[type[Exception]] = [httpx.HTTPError]
    try:
        import httpx2
        errors.append(httpx2.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _silent_tqdm():
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


class _HubFetcher:
    """Downloads single files of one repo at one revision with huggingface_hub, with retries and checks."""

    def __init__(self, *, repo_id: str, revision: str, endpoint: str, cache: Path, token: str | None,
                 retry: RetryPolicy, progress: bool, timeout_s: float, requested: Sequence[str]):
        self.repo_id, self.revision, self.endpoint, self.cache = repo_id, revision, endpoint, cache
        self.token, self.retry, self.progress, self.timeout_s = token, retry, progress, timeout_s
        self.requested = requested

    def cached(self, filename: str) -> Path | bool | None:
        """The cached file's path; False when the cache knows the repo lacks it; None when unknown."""
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(self.repo_id, filename, cache_dir=self.cache, revision=self.revision)
        if isinstance(found, str):
            return Path(found)
        return None if found is None else False

    def fetch(self, filename: str) -> Path | None:
        """Download ``filename``: its path in the snapshot, or None when the repo has no such file."""
        failures = 0
        while True:
            try:
                path = self._attempt(filename)
            except _Retryable as failure:
                failures += 1
                if failures >= self.retry.attempts:
                    raise self._gave_up(filename, failure, failures) from failure
                time.sleep(self.retry.delay_after(failures))
                continue
            if path is not None:
                self._check_sha256(filename, path)
            return path

    def _attempt(self, filename: str) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
        try:
            return Path(hf_hub_download(self.repo_id, filename, revision=self.revision, cache_dir=self.cache,
                                        endpoint=self.endpoint, token=self.token, etag_timeout=self.timeout_s,
                                        tqdm_class=None if self.progress else _silent_tqdm()))
        except EntryNotFoundError as e:
            if not isinstance(e, LocalEntryNotFoundError) or _http_status(e) == 404:   # the hub said 404
                return None
            raise self._retryable(filename, e) from e
        except RevisionNotFoundError as e:
            raise CheckpointError(f"hub repo {self.repo_id!r} has no revision {self.revision!r} "
                                  f"({self.endpoint}): check the revision") from e
        except (RepositoryNotFoundError, GatedRepoError) as e:
            raise self._access_denied(filename, _http_status(e) or 401) from e
        except (HfHubHTTPError, OSError, *_transport_errors()) as e:
            raise self._retryable(filename, e) from e

    def _retryable(self, filename: str, e: Exception) -> Exception:
        """What a failed attempt raises: _Retryable (network, HTTP 5xx/429), or a final error."""
        status = _http_status(e)
        if status in (401, 403):
            return self._access_denied(filename, status)
        if status is not None and status != 429 and status < 500:
            return DownloadError(f"unexpected HTTP {status} for {filename!r} of hub repo {self.repo_id!r} "
                                 f"(revision {self.revision!r}) from {self.endpoint}")
        if self._offline():
            return self._gave_up(filename, _Retryable("HF_HUB_OFFLINE is set", network=True), 0)
        reason = f"server answered HTTP {status}" if status else f"{type(e).__name__}: {e}"
        return _Retryable(reason.splitlines()[0], network=status is None)

    @staticmethod
    def _offline() -> bool:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)

    def _check_sha256(self, filename: str, path: Path) -> None:
        """An LFS file's blob is named by its SHA-256 (the hub's ETag): check the bytes match it.
        A mismatch deletes the blob and its snapshot link."""
        blob = path.resolve()
        if not _SHA256_HEX.fullmatch(blob.name):
            return
        actual = _file_sha256(blob)
        if actual != blob.name:
            blob.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise ChecksumError(f"downloaded {filename!r} of hub repo {self.repo_id!r} (revision {self.revision!r}) "
                                f"from {self.endpoint} has sha256 {actual}, but the hub's ETag says {blob.name}; "
                                "the corrupt download was deleted, try again")

    def _gave_up(self, filename: str, failure: _Retryable, attempts: int) -> DownloadError:
        files = ", ".join(self.requested)
        cause = "could not reach the hub" if failure.network else "the hub kept failing"
        url = hub_file_url(self.repo_id, filename, revision=self.revision, endpoint=self.endpoint)
        return DownloadError(
            f"could not download {filename!r} of hub repo {self.repo_id!r} (revision {self.revision!r}) "
            f"from {self.endpoint} ({url}): {cause} after {attempts} attempts, last error: {failure}. "
            f"To work offline, download the files ({files}) elsewhere and pass a local directory "
            "containing them instead of the repo id, e.g. load_model(\"/path/to/dir\") for a directory "
            "with config.json and model.safetensors; or set MECHSCOPE_HUB_ENDPOINT (or HF_ENDPOINT) to a "
            "reachable hub mirror. Files already downloaded stay cached (the Hugging Face cache) and "
            "partial downloads resume.")

    def _access_denied(self, filename: str, status: int) -> DownloadError:
        if self.token:
            advice = "the token was rejected or has no access to this repo: check the token and the repo id"
        else:
            advice = ("the repo may not exist, or be private or gated: check the repo id, or pass "
                      f"token=... (a Hugging Face access token) or set {TOKEN_ENV_VAR}")
        return DownloadError(f"HTTP {status} for {filename!r} of hub repo {self.repo_id!r} "
                             f"(revision {self.revision!r}) from {self.endpoint}: {advice}")


# --- requests of several files ---------------------------------------------------------------------
def _plan(filenames: Iterable[str], optional: Iterable[str], alternatives: Iterable[Sequence[str]]) -> list[_WantedFile]:
    def names(value: object, field: str) -> list[str]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise InvalidInputError(f"{field} must be a list of file names, got {value!r}", field=field)
        return [_validate_relative_path(name, field) for name in value]

    plan = [_WantedFile((name,), required=True) for name in names(filenames, "filenames")]
    if isinstance(alternatives, (str, bytes)) or not isinstance(alternatives, Iterable):
        raise InvalidInputError(f"alternatives must be a list of tuples of file names, got {alternatives!r}",
                                field="alternatives")
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
    """Make sure files of hub repo ``repo_id`` are in the Hugging Face cache; return their snapshot
    directory.

    - ``filenames``: files that must exist (404 raises :class:`HubFileNotFoundError`, a
      :class:`CheckpointError`).
    - ``alternatives``: groups such as ``("model.safetensors", "pytorch_model.bin")``; the first file
      of each group that the repo has is fetched (none cached: tried in order; none found: raises).
      A group is satisfied without any request when one of its files is already cached.
    - ``optional``: fetched when the repo has them; a 404 is remembered in the cache.

    Callers find out what they got by checking which files exist in the returned directory.
    ``token`` (default: huggingface_hub's, e.g. ``HF_TOKEN``) is sent as a bearer token. Network
    failures and HTTP 5xx/429 are retried per ``retry`` and then raise :class:`DownloadError`, as do
    401/403.
    """
    _validate_repo_id(repo_id)
    _validate_relative_path(revision, "revision")
    endpoint = _resolve_endpoint(endpoint)
    plan = _plan(filenames, optional, alternatives)
    fetcher = _HubFetcher(repo_id=repo_id, revision=revision, endpoint=endpoint, cache=hub_cache_dir(cache_dir),
                          token=token or None, retry=retry, progress=progress, timeout_s=timeout_s,
                          requested=[wanted.candidates[0] for wanted in plan if wanted.required])
    snapshot: Path | None = None
    for wanted in plan:
        found = _fetch_wanted(fetcher, wanted)
        if found is None:
            _handle_missing(wanted, repo_id, revision, endpoint)
        elif snapshot is None and found is not False:
            snapshot = _snapshot_of(found, wanted)
    return snapshot or hub_snapshot_dir(repo_id, revision=revision, cache_dir=cache_dir)


def _snapshot_of(path: Path, wanted: _WantedFile) -> Path:
    """The snapshot directory holding ``path`` (a file of ``wanted``, possibly in a subfolder)."""
    name = next(n for n in wanted.candidates if path.as_posix().endswith("/" + n))
    return Path(path.as_posix()[: -len(name) - 1])


def _fetch_wanted(fetcher: _HubFetcher, wanted: _WantedFile) -> Path | bool | None:
    """The first candidate's path (cached, or downloaded); False for an optional file the repo
    lacks; None when a required group has no file."""
    known = [fetcher.cached(name) for name in wanted.candidates]
    for path in known:
        if isinstance(path, Path):
            return path
    if not wanted.required and known[0] is False:
        return False
    for name, state in zip(wanted.candidates, known):
        if state is False:       # the cache knows the repo lacks it
            continue
        if (path := fetcher.fetch(name)) is not None:
            return path
    return False if not wanted.required else None


def _handle_missing(wanted: _WantedFile, repo_id: str, revision: str, endpoint: str) -> None:
    if len(wanted.candidates) == 1:
        what = f"no file {wanted.candidates[0]!r}"
    else:
        what = "none of the files " + ", ".join(repr(name) for name in wanted.candidates)
    raise HubFileNotFoundError(
        f"hub repo {repo_id!r} at revision {revision!r} on {endpoint} has {what} (HTTP 404): "
        "check the repo id, the revision and the file name",
        repo_id=repo_id, revision=revision, filenames=wanted.candidates)
