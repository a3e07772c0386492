"""Node datasets behind the node-page endpoint: a small interface, opening them from a store spec,
and turning their page data into JSON.

Anything with ``node(kind, layer, index)`` (optionally a ``hook_point=`` keyword to pick among several
SAEs) and a ``manifest`` mapping serves (mechscope's
``mechscope.datasets.node_dataset.NodeDataset`` is the real one). A dataset signals an unknown node
with a ``LookupError``/``FileNotFoundError`` or an ``InvalidInputError`` (e.g. its ``UnknownNodeError``).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("mechscope.server")


@runtime_checkable
class NodeDatasetSource(Protocol):
    @property
    def manifest(self) -> Mapping[str, Any]: ...

    def node(self, kind: str, layer: int, index: int) -> Any: ...


def accepts_hook_point(dataset: NodeDatasetSource) -> bool:
    """Whether ``dataset.node`` takes the optional ``hook_point`` keyword (SAE latents of several SAEs)."""
    try:
        return "hook_point" in inspect.signature(dataset.node).parameters
    except (TypeError, ValueError):
        return False


def open_node_dataset(spec: str) -> NodeDatasetSource:
    """The node dataset at a store spec (a local directory or an Azure container URL with prefix)."""
    from mechscope.datasets.stores import open_store
    try:
        from mechscope.datasets.node_dataset import NodeDataset
    except ImportError as e:  # the reader ships with mechscope.datasets; tolerate older installs
        raise RuntimeError("mechscope.datasets.node_dataset is not installed; node pages are unavailable") from e
    return NodeDataset(open_store(spec), "")


def dataset_name(spec: str) -> str:
    """A short name for a dataset spec: its last path component (without a SAS query)."""
    path = spec.split("?", 1)[0].rstrip("/")
    return path.rsplit("/", 1)[-1] or path


def describe(dataset: NodeDatasetSource) -> str:
    return str(getattr(dataset, "description", type(dataset).__name__))


def to_json(value: Any) -> Any:
    """Plain JSON data from a page object (dataclass, pydantic model, mapping, sequence, numpy
    scalar); non-finite floats become None (JSON has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return to_json(value.model_dump())
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_json(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
