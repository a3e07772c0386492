"""Turn a user-supplied store spec string into a BlobStore."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from .azure import AzureBlobStore
from .base import BlobStore
from .errors import InvalidStoreSpecError
from .local import LocalBlobStore
from .retry import RetryPolicy

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"

SPEC_FORMS = (
    "a local directory path (e.g. ./data or /srv/datasets); "
    "https://<account>.blob.core.windows.net/<container>[/<prefix>][?<sas-token>]; "
    "az://<account>/<container>[/<prefix>] (anonymous, blobfile style); "
    f"azure://<container>[/<prefix>] (connection string from ${CONNECTION_STRING_ENV}); "
    "http://127.0.0.1:<port>/<account>/<container>[/<prefix>] (path-style, e.g. Azurite)"
)


def open_store(spec: str, *, retry: RetryPolicy | None = None, env: Mapping[str, str] | None = None) -> BlobStore:
    """Open the store a spec names. The forms accepted are listed in ``SPEC_FORMS``.

    ``env`` (default ``os.environ``) is where ``azure://`` specs look up the connection string.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidStoreSpecError(f"store spec is empty; expected one of: {SPEC_FORMS}", field="spec")
    spec = spec.strip()
    if "://" not in spec:
        return LocalBlobStore(spec)
    parts = urlsplit(spec)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return LocalBlobStore(unquote(parts.path))
    if scheme == "azure":
        return _from_connection_string_env(spec, parts.netloc, parts.path, retry, env)
    if scheme == "az":
        container, prefix = _split_container(spec, parts.path)
        account = parts.netloc
        if not account:
            raise _bad(spec, "no storage account after az://")
        return AzureBlobStore(f"https://{account}.blob.core.windows.net", container, prefix=prefix, retry=retry)
    if scheme in ("http", "https"):
        return _from_url(spec, parts, retry)
    raise _bad(spec, f"unsupported scheme {parts.scheme!r}")


def _from_url(spec: str, parts, retry: RetryPolicy | None) -> AzureBlobStore:  # type: ignore[no-untyped-def]
    host = (parts.hostname or "").lower()
    sas_token = parts.query or None
    base = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    if host.endswith(".blob.core.windows.net"):
        container, prefix = _split_container(spec, parts.path)
        if parts.scheme != "https":
            raise _bad(spec, "Azure public endpoints need https")
        return AzureBlobStore(base, container, prefix=prefix, sas_token=sas_token, retry=retry)
    # Path style (Azurite, Azure Stack, IP endpoints): /<account>/<container>/<prefix>.
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise _bad(spec, "a path-style URL needs /<account>/<container> after the host")
    account, rest = segments[0], "/" + "/".join(segments[1:])
    container, prefix = _split_container(spec, rest)
    return AzureBlobStore(f"{base}/{account}", container, prefix=prefix, sas_token=sas_token, retry=retry)


def _from_connection_string_env(
    spec: str, container: str, path: str, retry: RetryPolicy | None, env: Mapping[str, str] | None
) -> AzureBlobStore:
    environment = os.environ if env is None else env
    connection_string = environment.get(CONNECTION_STRING_ENV)
    if not connection_string:
        raise InvalidStoreSpecError(
            f"store spec {spec!r} needs an Azure connection string in ${CONNECTION_STRING_ENV}, which is not set",
            field="spec",
        )
    if not container:
        raise _bad(spec, "no container after azure://")
    prefix = unquote(path).strip("/")
    return AzureBlobStore.from_connection_string(connection_string, container, prefix=prefix, retry=retry)


def _split_container(spec: str, path: str) -> tuple[str, str]:
    segments = [s for s in unquote(path).split("/") if s]
    if not segments:
        raise _bad(spec, "no container name in the path")
    return segments[0], "/".join(segments[1:])


def _bad(spec: str, problem: str) -> InvalidStoreSpecError:
    shown = spec.split("?", 1)[0] + ("?<redacted>" if "?" in spec else "")  # never echo SAS tokens
    return InvalidStoreSpecError(f"cannot open store {shown!r}: {problem}; expected one of: {SPEC_FORMS}", field="spec")
