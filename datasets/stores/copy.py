"""Copy every blob under a prefix from one store to another (``mechscope datasets push|pull``)."""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from .base import BlobStore


@dataclass(frozen=True)
class CopyResult:
    blobs_copied: int
    bytes_copied: int
    blobs_skipped: int
    """Blobs left alone because the destination already had one of the same size."""


def copy_tree(
    src: BlobStore, dst: BlobStore, prefix: str = "", *, progress: bool = True, overwrite: bool = False
) -> CopyResult:
    """Copy blobs whose key starts with ``prefix`` from ``src`` to the same keys in ``dst``.

    A blob that already exists in ``dst`` with the same size is skipped unless ``overwrite``. Each
    blob is written atomically, so an interrupted copy can simply be run again.
    """
    entries = list(src.list_entries(prefix))
    total_bytes = sum(e.size for e in entries)
    copied = copied_bytes = skipped = 0
    with tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc=f"copy {len(entries)} blobs",
        disable=not progress,
    ) as bar:
        for entry in entries:
            if not overwrite and dst.size(entry.key) == entry.size:
                skipped += 1
            else:
                data = src.read(entry.key)
                dst.write(entry.key, data)
                copied += 1
                copied_bytes += len(data)
            bar.update(entry.size)
    return CopyResult(copied, copied_bytes, skipped)
