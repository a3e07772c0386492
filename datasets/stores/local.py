"""A blob store backed by a local directory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from mechscope.inference.errors import InvalidInputError

from .base import BlobData, BlobEntry, BlobStore, check_range
from .errors import BlobNotFoundError, InvalidBlobKeyError, StoreError
from .keys import validate_key, validate_prefix

# Partially written blobs live next to their target under this name prefix until os.replace.
_TEMP_PREFIX = ".~mechscope-partial-"


class LocalBlobStore(BlobStore):
    """Blobs are files under ``root``; key 'a/b.json' is the file ``root/a/b.json``.

    The root directory is created on the first write. Writes go to a temporary file in the target's
    directory, are flushed and fsynced, then renamed over the target (``os.replace`` is atomic on
    POSIX and Windows), so readers never see a partial blob.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self._root = Path(root).expanduser().absolute()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def description(self) -> str:
        return f"local directory {self._root}"

    def _path(self, key: str) -> Path:
        validate_key(key)
        if any(segment.startswith(_TEMP_PREFIX) for segment in key.split("/")):
            raise InvalidBlobKeyError(
                f"invalid blob key {key!r}: segments starting with {_TEMP_PREFIX!r} are reserved",
                field="key",
            )
        return self._root.joinpath(*key.split("/"))

    def _not_found(self, key: str) -> BlobNotFoundError:
        return BlobNotFoundError(f"blob {key!r} not found in {self.description}", store=self.description, key=key)

    def _os_error(self, action: str, key: str, error: OSError) -> StoreError:
        return StoreError(
            f"could not {action} blob {key!r} in {self.description}: {error}", store=self.description, key=key
        )

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None
        except OSError as error:
            raise self._os_error("read", key, error) from error

    def read_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if start + length > size:
                    raise InvalidInputError(
                        f"range [{start}, {start + length}) runs past the end of blob {key!r} "
                        f"({size} bytes) in {self.description}",
                        field="length",
                    )
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None
        except OSError as error:
            raise self._os_error("read", key, error) from error

    def write(self, key: str, data: BlobData) -> None:
        path = self._path(key)
        temp = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                f = open(temp, "xb")
            except OSError as error:
                raise self._os_error("write", key, error) from error
            with f:
                for chunk in chunks:  # errors raised by the producer propagate unchanged
                    try:
                        f.write(chunk)
                    except OSError as error:
                        raise self._os_error("write", key, error) from error
                try:
                    f.flush()
                    os.fsync(f.fileno())
                except OSError as error:
                    raise self._os_error("write", key, error) from error
            try:
                os.replace(temp, path)
            except OSError as error:
                raise self._os_error("write", key, error) from error
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise self._os_error("stat", key, error) from error
        return st.st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None
        except OSError as error:
            raise self._os_error("delete", key, error) from error

    def list_entries(self, prefix: str = "") -> Iterator[BlobEntry]:
        validate_prefix(prefix)
        # Walk only the deepest directory the prefix fully names, then filter by the string prefix.
        directory_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._root.joinpath(*directory_part.split("/")) if directory_part else self._root
        if not start.is_dir():
            return
        found: list[BlobEntry] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TEMP_PREFIX)]
            rel_dir = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                if name.startswith(_TEMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    try:
                        size = os.stat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:  # deleted while listing
                        continue
                    found.append(BlobEntry(key, size))
        found.sort(key=lambda e: e.key)
        yield from found
