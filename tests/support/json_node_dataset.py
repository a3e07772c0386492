"""A tiny node dataset for the server tests: JSON page records on a real blob store.

Layout under ``prefix``: ``manifest.json`` and ``{kind}/{layer}/{index}.json`` (one page each).
It implements the server's ``NodeDatasetSource`` interface (``manifest``, ``node(kind, layer,
index)``) the way mechscope's NodeDataset does, reading through the store's real I/O."""

from __future__ import annotations

import json

from mechscope.datasets.stores import BlobStore, join_key


class JsonNodeDataset:
    def __init__(self, store: BlobStore, prefix: str = ""):
        self.store, self.prefix = store, prefix.strip("/")
        self.manifest = json.loads(store.read(self._key("manifest.json")))

    @property
    def description(self) -> str:
        return f"json node dataset '{self.prefix}' in {self.store.description}"

    def _key(self, *parts: str) -> str:
        return join_key(self.prefix, *parts) if self.prefix else join_key(*parts)

    def node(self, kind: str, layer: int, index: int) -> dict:
        """Raises BlobNotFoundError (a FileNotFoundError) for a node it does not hold."""
        return json.loads(self.store.read(self._key(kind, str(layer), f"{index}.json")))

    @staticmethod
    def write(store: BlobStore, prefix: str, pages: dict[tuple[str, int, int], dict], manifest: dict) -> None:
        base = prefix.strip("/")
        key = (lambda *p: join_key(base, *p)) if base else (lambda *p: join_key(*p))
        store.write(key("manifest.json"), json.dumps(manifest).encode())
        for (kind, layer, index), page in pages.items():
            store.write(key(kind, str(layer), f"{index}.json"), json.dumps(page).encode())
