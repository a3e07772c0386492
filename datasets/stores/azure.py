"""A blob store backed by an Azure Blob Storage container (or Azurite)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient

from mechscope.inference.errors import InvalidInputError

from .base import BlobData, BlobEntry, BlobStore, check_range
from .errors import BlobNotFoundError, StoreAccessDeniedError, StoreError, StoreUnavailableError
from .keys import join_key, validate_key, validate_prefix
from .retry import RetryEvent, RetryPolicy

# Azurite 3.35 rejects the newest service version azure-storage-blob 12.31 sends by default.
AZURE_API_VERSION = "2025-11-05"

_TRANSIENT_STATUS = {408, 429}
T = TypeVar("T")


class AzureBlobStore(BlobStore):
    """Blobs in one container, optionally under a key ``prefix`` ('a/b' maps key 'k' to blob 'a/b/k').

    Build it with one of:

    * ``AzureBlobStore.from_connection_string(conn_str, container)``
    * ``AzureBlobStore(account_url, container, sas_token=...)`` or ``account_key=...``
    * ``AzureBlobStore(account_url, container)`` — anonymous, for public containers such as
      ``https://openaipublic.blob.core.windows.net/neuron-explainer``.

    The SDK's own retries are switched off; transient failures (connection errors, timeouts, 408,
    429, 5xx) are retried here with :class:`RetryPolicy`, then raise StoreUnavailableError.
    """

    def __init__(
        self,
        account_url: str,
        container: str,
        *,
        prefix: str = "",
        sas_token: str | None = None,
        account_key: str | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        _client: ContainerClient | None = None,
    ):
        if sas_token and account_key:
            raise InvalidInputError("give either sas_token or account_key, not both", field="credential")
        if not container:
            raise InvalidInputError(f"container name is empty (account {account_url!r})", field="container")
        self._account_url = _strip_query(account_url).rstrip("/")
        self._container = container
        self._prefix = validate_prefix(prefix).strip("/")
        self._retry = retry or RetryPolicy()
        if _client is None:
            credential: object = None
            if sas_token:
                credential = sas_token.lstrip("?")
            elif account_key:
                credential = {"account_name": _account_name(self._account_url), "account_key": account_key}
            _client = ContainerClient(
                self._account_url, container, credential=credential, **_client_options(connect_timeout_s, read_timeout_s)
            )
        self._client = _client

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container: str,
        *,
        prefix: str = "",
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
    ) -> AzureBlobStore:
        try:
            client = ContainerClient.from_connection_string(
                connection_string, container, **_client_options(connect_timeout_s, read_timeout_s)
            )
        except (ValueError, AzureError) as error:
            # Never echo the connection string: it holds the account key.
            raise InvalidInputError(f"invalid Azure connection string: {error}", field="connection_string") from None
        account_url = _strip_query(client.primary_endpoint).rstrip("/")
        account_url = account_url[: -len(container) - 1] if account_url.endswith("/" + container) else account_url
        return cls(account_url, container, prefix=prefix, retry=retry, _client=client)

    # ---- description and key mapping -------------------------------------------------------

    @property
    def description(self) -> str:
        where = f"Azure container {self._account_url}/{self._container}"
        return f"{where} (prefix '{self._prefix}/')" if self._prefix else where

    @property
    def container_client(self) -> ContainerClient:
        return self._client

    def _blob_name(self, key: str) -> str:
        return join_key(self._prefix, validate_key(key))

    def _key_of(self, blob_name: str) -> str:
        return blob_name[len(self._prefix) + 1 :] if self._prefix else blob_name

    # ---- operations -------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        name = self._blob_name(key)
        return self._call("read", key, lambda: self._client.download_blob(name).readall())

    def read_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        name = self._blob_name(key)
        if length == 0:
            size = self.size(key)
            if size is None:
                raise self._not_found(key, None)
            self._check_range_fits(key, start, length, size)
            return b""

        def fetch() -> bytes | None:
            try:
                return self._client.download_blob(name, offset=start, length=length).readall()
            except HttpResponseError as error:
                if error.status_code == 416:  # the range starts at or past the end of the blob
                    return None
                raise

        data = self._call("read", key, fetch)
        if data is None or len(data) != length:
            size = self.size(key)
            if size is None:
                raise self._not_found(key, None)
            self._check_range_fits(key, start, length, size)
            raise StoreError(  # the blob is long enough, yet the service returned too little
                f"short read of blob {key!r} in {self.description}: asked {length} bytes at {start}, "
                f"got {0 if data is None else len(data)}",
                store=self.description,
                key=key,
            )
        return data

    def write(self, key: str, data: BlobData) -> None:
        name = self._blob_name(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            # Materialise iterables so that a retry can resend them; a failing iterator uploads nothing.
            data = b"".join(data)
        payload = bytes(data)
        self._call("write", key, lambda: self._client.upload_blob(name, payload, overwrite=True))

    def size(self, key: str) -> int | None:
        name = self._blob_name(key)
        try:
            props = self._call("stat", key, lambda: self._client.get_blob_client(name).get_blob_properties())
        except BlobNotFoundError:
            return None
        return int(props.size)

    def delete(self, key: str) -> None:
        name = self._blob_name(key)
        self._call("delete", key, lambda: self._client.delete_blob(name))

    def list_entries(self, prefix: str = "") -> Iterator[BlobEntry]:
        validate_prefix(prefix)
        name_prefix = f"{self._prefix}/{prefix}" if self._prefix else prefix
        token: str | None = None
        while True:
            def next_page(token: str | None = token) -> tuple[list[BlobEntry], str | None]:
                pages = self._client.list_blobs(name_starts_with=name_prefix or None).by_page(continuation_token=token)
                page = next(pages, None)
                entries = [] if page is None else [BlobEntry(self._key_of(b.name), int(b.size)) for b in page]
                return entries, pages.continuation_token

            entries, token = self._call("list", prefix, next_page, subject=f"blobs under prefix {prefix!r}")
            yield from entries
            if not token:
                return

    # ---- error handling ---------------------------------------------------------------------

    def _call(self, action: str, key: str, operation: Callable[[], T], *, subject: str | None = None) -> T:
        """Run ``operation`` under our retry policy, translating SDK errors into StoreErrors."""
        subject = subject or f"blob {key!r}"
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except AzureError as error:
                if isinstance(error, ResourceNotFoundError):
                    raise self._not_found(key, error) from None
                if _is_access_denied(error):
                    raise StoreAccessDeniedError(
                        f"{self.description} refused to {action} {subject} ({_summary(error)}): check the "
                        "SAS token / account key and its permissions, or that the container allows public access",
                        store=self.description,
                        key=key,
                    ) from None
                if not _is_transient(error):
                    raise StoreError(
                        f"could not {action} {subject} in {self.description}: {_summary(error)}",
                        store=self.description,
                        key=key,
                    ) from error
                if attempt >= self._retry.attempts:
                    raise StoreUnavailableError(
                        f"{self.description} is unavailable: could not {action} {subject} after {attempt} "
                        f"attempts over {time.monotonic() - started:.1f}s (last error: {_summary(error)})",
                        store=self.description,
                        key=key,
                        attempts=attempt,
                    ) from error
                delay = self._retry.delay_after(attempt)
                if self._retry.on_retry is not None:
                    self._retry.on_retry(RetryEvent(action, key, attempt, delay, error))
                time.sleep(delay)

    def _not_found(self, key: str, error: AzureError | None) -> BlobNotFoundError:
        detail = ""
        if error is not None and _error_code(error) == "ContainerNotFound":
            detail = " (the container does not exist)"
        return BlobNotFoundError(
            f"blob {key!r} not found in {self.description}{detail}", store=self.description, key=key
        )

    def _check_range_fits(self, key: str, start: int, length: int, size: int) -> None:
        if start + length > size:
            raise InvalidInputError(
                f"range [{start}, {start + length}) runs past the end of blob {key!r} ({size} bytes) "
                f"in {self.description}",
                field="length",
            )


def _client_options(connect_timeout_s: float, read_timeout_s: float) -> dict[str, object]:
    return {
        "api_version": AZURE_API_VERSION,
        "retry_total": 0,  # our RetryPolicy governs
        "connection_timeout": connect_timeout_s,
        "read_timeout": read_timeout_s,
    }


def _is_access_denied(error: AzureError) -> bool:
    return isinstance(error, ClientAuthenticationError) or (
        isinstance(error, HttpResponseError) and error.status_code in (401, 403)
    )


def _is_transient(error: AzureError) -> bool:
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return True  # connection refused/reset, DNS, timeouts, truncated responses
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        return status >= 500 or status in _TRANSIENT_STATUS
    return False


def _error_code(error: AzureError) -> str:
    return str(getattr(error, "error_code", None) or type(error).__name__)


def _summary(error: AzureError) -> str:
    status = getattr(error, "status_code", None)
    first_line = (str(error.message) if getattr(error, "message", None) else str(error)).splitlines()[0:1]
    text = first_line[0] if first_line else ""
    prefix = f"HTTP {status} " if status else ""
    return f"{prefix}{type(error).__name__}: {text}"[:300]


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _account_name(account_url: str) -> str:
    """The storage account of an account URL: virtual-host style or path style (Azurite)."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    if host.endswith(".blob.core.windows.net"):
        return host.split(".", 1)[0]
    segments = [s for s in parts.path.split("/") if s]
    if segments:
        return segments[0]
    raise InvalidInputError(f"cannot tell the storage account from URL {account_url!r}", field="account_url")
