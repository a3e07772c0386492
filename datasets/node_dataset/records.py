"""mechscope's node-dataset format: what one node's page shows, and how it is packed on a store.

A *node dataset* holds, for every node of a model (MLP neuron, attention head, SAE latent), its
top-activating examples, a random sample, samples by activation quantile, activation statistics, a
histogram and the tokens its write vector promotes / suppresses. Layout under a prefix::

    {prefix}/manifest.json              committed last; readers accept nothing without it
    {prefix}/shared.bin                 the random-sample windows' tokens (shared by every node)
    {prefix}/shards/{group}.bin         one record per node of the group, concatenated
    {prefix}/shards/{group}.idx         int64 [n_nodes, 3]: byte offset, length, crc32 of each record

A *group* is one (kind, layer) — or, for SAE latents, one SAE hook point. The manifest lists every
blob with its size and sha256. A reader checks the manifest's format version, the sizes of a group's
blobs and the sha256 of its index on first use of the group, and each record's crc32 when it reads
it, so one node's page costs two small range reads and never the whole dataset.

A record (and ``shared.bin``) is a safetensors blob: named little-endian arrays plus a string
metadata map — no pickled code anywhere.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from mechscope.inference.errors import InvalidInputError, MechscopeError

FORMAT_NAME = "mechscope-node-dataset"
FORMAT_VERSION = 1
MANIFEST_KEY = "manifest.json"
SHARED_KEY = "shared.bin"

MLP_NEURON = "mlp_neuron"
ATTN_HEAD = "attn_head"
SAE_LATENT = "sae_latent"
NODE_KINDS = (MLP_NEURON, ATTN_HEAD, SAE_LATENT)


# ---- errors -------------------------------------------------------------------------------------


class NodeDatasetError(MechscopeError):
    """A node dataset is missing, incomplete, corrupt, or of an unsupported format."""

    def __init__(self, message: str, *, store: str | None = None, key: str | None = None):
        super().__init__(message)
        self.store = store
        self.key = key


class DatasetIncompleteError(NodeDatasetError):
    """No committed manifest: the dataset was never built, or its build has not finished."""


class DatasetIntegrityError(NodeDatasetError):
    """A blob does not match what the manifest (or the index) says about it."""


class UnknownNodeError(InvalidInputError):
    """A (kind, layer, index) that the dataset does not hold."""


# ---- what a node page shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleWindow:
    """A window of corpus text with the node's activation on each token.

    For attention heads ``activations[i]`` is the head's activation at query token i (the largest
    write norm over its keys) and ``token_pair_activations`` the lower triangle of the window's
    (query i, key j <= i) write-norm matrix, flattened row by row (TDB's layout).
    """

    tokens: list[str]
    activations: list[float]
    max_activation: float
    max_position: int | None = None
    """Index in the window of the token the example was chosen for (None when unknown, e.g. TDB)."""
    token_ids: list[int] | None = None
    row: int | None = None
    """Corpus row the window comes from, and where in that row it starts."""
    start: int | None = None
    token_pair_activations: list[float] | None = None


@dataclass(frozen=True)
class NodeStats:
    """Moments of the node's per-token activation over the whole corpus (NaN when unknown)."""

    mean: float = math.nan
    variance: float = math.nan
    skewness: float = math.nan
    kurtosis: float = math.nan
    """Excess kurtosis is *not* used: this is the plain fourth standardised moment (normal = 3)."""
    density: float = math.nan
    """Fraction of tokens where the activation is > 0."""
    min: float = math.nan
    max: float = math.nan
    count: int = 0


@dataclass(frozen=True)
class Histogram:
    """Counts of the per-token activation in ``len(edges) - 1`` equal bins, plus values outside."""

    edges: list[float]
    counts: list[int]
    underflow: int = 0
    overflow: int = 0


@dataclass(frozen=True)
class TokenEffect:
    token: str
    token_id: int
    value: float


@dataclass(frozen=True)
class NodePageData:
    """Everything a node's page shows, whatever dataset format it came from."""

    kind: str
    layer: int | None
    index: int
    top_examples: list[ExampleWindow]
    random_sample: list[ExampleWindow] = field(default_factory=list)
    quantile_samples: list[list[ExampleWindow]] | None = None
    quantile_boundaries: list[float] | None = None
    stats: NodeStats = field(default_factory=NodeStats)
    histogram: Histogram | None = None
    promoted_tokens: list[TokenEffect] = field(default_factory=list)
    suppressed_tokens: list[TokenEffect] = field(default_factory=list)
    hook_point: str | None = None
    token_pair: bool = False
    source: str = ""


# ---- record blobs -------------------------------------------------------------------------------


def encode_record(arrays: dict[str, np.ndarray], meta: dict[str, object]) -> bytes:
    """A safetensors blob of ``arrays`` with ``meta`` (JSON-able) under the metadata key 'meta'."""
    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return _st_save(contiguous, metadata={"meta": json.dumps(meta, sort_keys=True, allow_nan=True)})


def decode_record(data: bytes, *, source: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    try:
        arrays = _st_load(bytes(data))
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("meta", "{}"))
    except Exception as error:  # safetensors raises its own error types
        raise DatasetIntegrityError(f"{source}: not a valid node record ({error})") from None
    return arrays, meta


INDEX_COLUMNS = 3  # offset, length, crc32


def encode_index(offsets: np.ndarray, lengths: np.ndarray, crcs: np.ndarray) -> bytes:
    return np.stack([offsets, lengths, crcs], axis=1).astype("<i8").tobytes()


def decode_index(data: bytes, n_nodes: int, *, source: str) -> np.ndarray:
    expected = n_nodes * INDEX_COLUMNS * 8
    if len(data) != expected:
        raise DatasetIntegrityError(f"{source}: index has {len(data)} bytes, expected {expected} for {n_nodes} nodes")
    return np.frombuffer(data, dtype="<i8").reshape(n_nodes, INDEX_COLUMNS)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def group_name(kind: str, layer: int | None, hook_point: str | None = None) -> str:
    """Blob-name-safe name of a group: 'mlp_neuron.3', 'attn_head.0', 'sae_latent.blocks.1.hook_mlp_out'."""
    if kind == SAE_LATENT:
        return f"{kind}.{hook_point}"
    return f"{kind}.{layer}"


def shard_keys(group: str) -> tuple[str, str]:
    return f"shards/{group}.bin", f"shards/{group}.idx"


def lower_triangle_size(window: int) -> int:
    return window * (window + 1) // 2
