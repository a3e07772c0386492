"""The interface every blob store implements."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

BlobData = bytes | bytearray | memoryview | Iterable[bytes]
"""What :meth:`BlobStore.write` accepts: the bytes, or an iterable of byte chunks."""


@dataclass(frozen=True)
class BlobEntry:
    """One blob found by :meth:`BlobStore.list_entries`."""

    key: str
    size: int


class BlobStore(abc.ABC):
    """A flat namespace of immutable-once-written blobs addressed by '/'-separated keys.

    Implementations: :class:`~mechscope.datasets.stores.LocalBlobStore` (a directory) and
    :class:`~mechscope.datasets.stores.AzureBlobStore` (an Azure Blob container, optionally under a
    key prefix). Writes are atomic: a reader sees either the old blob, the new one, or none.
    """

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Human-readable name used in error messages, e.g. 'local directory /data/x'."""

    @abc.abstractmethod
    def read(self, key: str) -> bytes:
        """The whole blob. Raises BlobNotFoundError if it does not exist."""

    @abc.abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Exactly ``length`` bytes starting at byte ``start``.

        Raises InvalidInputError if the range runs past the end of the blob (a short read from a
        packed shard means a corrupt index, so it is never silently truncated).
        """

    @abc.abstractmethod
    def write(self, key: str, data: BlobData) -> None:
        """Create or replace a blob atomically."""

    @abc.abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes, or None if the blob does not exist."""

    @abc.abstractmethod
    def list_entries(self, prefix: str = "") -> Iterator[BlobEntry]:
        """Blobs whose key starts with ``prefix`` (a plain string prefix), in key order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete a blob. Raises BlobNotFoundError if it does not exist."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in key order."""
        for entry in self.list_entries(prefix):
            yield entry.key

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.description}>"


def check_range(start: int, length: int) -> None:
    from mechscope.inference.errors import InvalidInputError

    if not isinstance(start, int) or start < 0:
        raise InvalidInputError(f"range start must be a non-negative integer, got {start!r}", field="start")
    if not isinstance(length, int) or length < 0:
        raise InvalidInputError(f"range length must be a non-negative integer, got {length!r}", field="length")
