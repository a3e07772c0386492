"""Read node datasets: mechscope's own (:class:`NodeDataset`) and TDB's collated-activation files
(:class:`TdbNodeDataset`), both as :class:`~.records.NodePageData`; export ours to TDB's layout.

    ds = NodeDataset(open_store("data/datasets"), "organism")
    page = ds.node("mlp_neuron", 2, 117)
    page.top_examples[0].tokens, page.top_examples[0].activations, page.stats.mean

Reading one node costs two reads on first use of its group (the group's index, then the record) and
one range read afterwards. See :mod:`.records` for the layout and the integrity checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator

import numpy as np

from mechscope.inference.tokenizer import Tokenizer, gpt2_tokenizer

from .records import (ATTN_HEAD, FORMAT_NAME, FORMAT_VERSION, MANIFEST_KEY, MLP_NEURON, NODE_KINDS, SAE_LATENT,
                           DatasetIncompleteError, DatasetIntegrityError, ExampleWindow, Histogram, NodeDatasetError,
                           NodePageData, NodeStats, TokenEffect, UnknownNodeError, crc32, decode_index,
                           decode_record)
from ..stores import BlobNotFoundError, BlobStore, join_key
from ..tdb_datasets import TdbDataset
from ..tdb_records import ActivationRecord, NeuronRecord


class NodeDataset:
    """A finished node dataset at ``prefix`` of ``store`` (see :mod:`.records`).

    Raises :class:`DatasetIncompleteError` when there is no manifest (never built, or the build has
    not finished) and :class:`DatasetIntegrityError` when a blob does not match the manifest. Safe to
    share between threads.
    """

    def __init__(self, store: BlobStore, prefix: str = "", *, tokenizer: Tokenizer | None = None):
        self.store = store
        self.prefix = prefix.strip("/")
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._indexes: dict[str, np.ndarray] = {}
        self._shared: dict[str, np.ndarray] | None = None
        key = self._key(MANIFEST_KEY)
        try:
            raw = store.read(key)
        except BlobNotFoundError:
            raise DatasetIncompleteError(
                f"no node dataset at '{self.prefix}' in {store.description}: {MANIFEST_KEY} is missing (the dataset "
                "was never built, or its build has not finished; build it with `mechscope datasets build`)",
                store=store.description, key=key) from None
        try:
            manifest = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetIntegrityError(f"{key} in {store.description} is not valid JSON ({error})",
                                        store=store.description, key=key) from None
        if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
            raise NodeDatasetError(
                f"{key} in {store.description} is format {manifest.get('format')!r} version "
                f"{manifest.get('format_version')!r}; this mechscope reads {FORMAT_NAME!r} version {FORMAT_VERSION}",
                store=store.description, key=key)
        self.manifest: dict = manifest
        self._groups = {g["name"]: g for g in manifest["groups"]}

    @property
    def description(self) -> str:
        return f"node dataset '{self.prefix}' in {self.store.description}"

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = gpt2_tokenizer()
        return self._tokenizer

    def _key(self, key: str) -> str:
        return join_key(self.prefix, key)

    # ---- what is inside ------------------------------------------------------------------------
    @property
    def groups(self) -> list[dict]:
        """Per group: name, kind, layer, hook_point, n_nodes, token_pair (and its blobs)."""
        return list(self.manifest["groups"])

    def find_group(self, kind: str, layer: int | None = None, hook_point: str | None = None) -> dict:
        if kind not in NODE_KINDS:
            raise UnknownNodeError(f"unknown node kind {kind!r}; expected one of {list(NODE_KINDS)}", field="kind")
        found = [g for g in self.manifest["groups"] if g["kind"] == kind
                 and (hook_point is None or g["hook_point"] == hook_point)
                 and (layer is None or g["layer"] == layer)]
        if len(found) == 1:
            return found[0]
        have = sorted((g["layer"] if g["layer"] is not None else -1, g["hook_point"] or "")
                      for g in self.manifest["groups"] if g["kind"] == kind)
        if not found:
            raise UnknownNodeError(f"{self.description} has no {kind} group for layer={layer!r}, "
                                   f"hook_point={hook_point!r}; it has {have}", field="layer")
        raise UnknownNodeError(f"{kind} at layer {layer!r} is ambiguous in {self.description}: pass hook_point, one "
                               f"of {[g['hook_point'] for g in found]}", field="hook_point")

    def iter_nodes(self) -> Iterator[tuple[str, int | None, int, str | None]]:
        """(kind, layer, index, hook_point) of every node."""
        for g in self.manifest["groups"]:
            for i in range(g["n_nodes"]):
                yield g["kind"], g["layer"], i, g["hook_point"]

    # ---- integrity ------------------------------------------------------------------------------
    def _blob(self, entry: dict, *, full_check: bool) -> bytes | None:
        key = self._key(entry["key"])
        size = self.store.size(key)
        if size is None:
            raise DatasetIntegrityError(f"{self.description}: {entry['key']} is listed in the manifest but missing",
                                        store=self.store.description, key=key)
        if size != entry["size"]:
            raise DatasetIntegrityError(f"{self.description}: {entry['key']} has {size} bytes, the manifest says "
                                        f"{entry['size']} (a different or partial build wrote it)",
                                        store=self.store.description, key=key)
        if not full_check:
            return None
        data = self.store.read(key)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DatasetIntegrityError(f"{self.description}: sha256 of {entry['key']} does not match the manifest",
                                        store=self.store.description, key=key)
        return data

    def verify(self) -> None:
        """Check every blob's size and sha256 against the manifest (reads the whole dataset)."""
        for g in self.manifest["groups"]:
            self._blob(g["shard"], full_check=True)
            self._blob(g["index"], full_check=True)
        self._blob(self.manifest["shared"], full_check=True)

    def _index(self, group: dict) -> np.ndarray:
        with self._lock:
            index = self._indexes.get(group["name"])
        if index is None:
            self._blob(group["shard"], full_check=False)
            data = self._blob(group["index"], full_check=True)
            index = decode_index(data, group["n_nodes"], source=f"{self.description}: {group['index']['key']}")
            with self._lock:
                self._indexes[group["name"]] = index
        return index

    def _shared_arrays(self) -> dict[str, np.ndarray]:
        with self._lock:
            shared = self._shared
        if shared is None:
            data = self._blob(self.manifest["shared"], full_check=True)
            shared, _ = decode_record(data, source=f"{self.description}: shared")
            with self._lock:
                self._shared = shared
        return shared

    # ---- one node -------------------------------------------------------------------------------
    def record(self, kind: str, layer: int | None, index: int, *, hook_point: str | None = None
               ) -> tuple[dict[str, np.ndarray], dict]:
        """The raw arrays and metadata of one node's record."""
        group = self.find_group(kind, layer, hook_point)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < group["n_nodes"]:
            raise UnknownNodeError(f"{kind} index {index!r} is out of range: {group['name']} has "
                                   f"{group['n_nodes']} nodes", field="index")
        offset, length, crc = (int(x) for x in self._index(group)[int(index)])
        key = self._key(group["shard"]["key"])
        data = self.store.read_range(key, offset, length)
        if crc32(data) != crc:
            raise DatasetIntegrityError(f"{self.description}: record {index} of {group['shard']['key']} fails its "
                                        "checksum", store=self.store.description, key=key)
        return decode_record(data, source=f"{self.description}: {group['shard']['key']}[{index}]")

    def node(self, kind: str, layer: int | None, index: int, *, hook_point: str | None = None) -> NodePageData:
        """Page data of node ``index`` of ``kind`` in ``layer`` (SAE latents: or at ``hook_point``)."""
        arrays, meta = self.record(kind, layer, index, hook_point=hook_point)
        return self._page(arrays, meta)

    def _page(self, a: dict[str, np.ndarray], meta: dict) -> NodePageData:
        strs = self.tokenizer.token_strs
        pair = "top_pair" in a

        def window(tok, act, val, row, start, pos, pairs) -> ExampleWindow:  # type: ignore[no-untyped-def]
            return ExampleWindow(tokens=strs(tok.tolist()), activations=act.tolist(), max_activation=float(val),
                                 max_position=int(pos) - int(start), token_ids=tok.tolist(), row=int(row),
                                 start=int(start), token_pair_activations=None if pairs is None else pairs.tolist())

        top = [window(a["top_tok"][j], a["top_act"][j], a["top_val"][j], a["top_row"][j], a["top_start"][j],
                      a["top_pos"][j], a["top_pair"][j] if pair else None) for j in range(len(a["top_val"]))]
        quantiles = []
        for q in range(a["q_row"].shape[0]):
            quantiles.append([window(a["q_tok"][q, j], a["q_act"][q, j], a["q_val"][q, j], a["q_row"][q, j],
                                     a["q_start"][q, j], a["q_pos"][q, j], a["q_pair"][q, j] if pair else None)
                              for j in range(a["q_row"].shape[1]) if a["q_row"][q, j] >= 0])
        shared = self._shared_arrays()
        random = []
        for j in range(len(shared["rand_row"])):
            if shared["rand_row"][j] < 0:
                continue
            act = a["rand_act"][j]
            best = int(np.argmax(act))
            random.append(window(shared["rand_tok"][j], act, act[best], shared["rand_row"][j],
                                 shared["rand_start"][j], int(shared["rand_start"][j]) + best,
                                 a["rand_pair"][j] if pair else None))
        s = a["stats"]
        stats = NodeStats(mean=float(s[0]), variance=float(s[1]), skewness=float(s[2]), kurtosis=float(s[3]),
                          density=float(s[4]), min=float(s[5]), max=float(s[6]), count=int(s[7]))
        lo, width = (float(x) for x in a["hist_range"])
        counts = a["hist"].tolist()
        edges = (lo + width * np.arange(len(counts) - 1, dtype=np.float64)).tolist()
        histogram = Histogram(edges=edges, counts=counts[1:-1], underflow=counts[0], overflow=counts[-1])

        def effects(ids_key: str, vals_key: str) -> list[TokenEffect]:
            if ids_key not in a:
                return []
            return [TokenEffect(strs([int(i)])[0], int(i), float(v)) for i, v in zip(a[ids_key], a[vals_key])]

        return NodePageData(
            kind=meta["kind"], layer=meta["layer"], index=int(meta["index"]), hook_point=meta.get("hook_point"),
            top_examples=top, random_sample=random, quantile_samples=quantiles,
            quantile_boundaries=[float(x) for x in a["q_bounds"]], stats=stats, histogram=histogram,
            promoted_tokens=effects("promoted_ids", "promoted_vals"),
            suppressed_tokens=effects("suppressed_ids", "suppressed_vals"),
            token_pair=pair, source=self.description,
        )


# ---- TDB datasets through the same page shape ------------------------------------------------------


def page_from_tdb_record(record: NeuronRecord, kind: str, *, token_pair: bool, source: str = "",
                         hook_point: str | None = None) -> NodePageData:
    """A TDB NeuronRecord as page data. For token-pair records the per-token activation is the max of
    each query row (as mechscope defines a head's activation at a token)."""

    def window(r: ActivationRecord) -> ExampleWindow:
        if token_pair:
            from ..tdb_records import token_pair_rows
            per_token = [max(row) if row else 0.0 for row in token_pair_rows(r)]
            pairs = list(r.activations)
        else:
            per_token, pairs = list(r.activations), None
        best = max(range(len(per_token)), key=per_token.__getitem__) if per_token else None
        return ExampleWindow(tokens=list(r.tokens), activations=per_token,
                             max_activation=per_token[best] if best is not None else 0.0, max_position=best,
                             token_pair_activations=pairs)

    def finite(x: float) -> float:
        return float(x) if x is not None and math.isfinite(x) else math.nan

    return NodePageData(
        kind=kind, layer=record.layer_index, index=record.neuron_index, hook_point=hook_point,
        top_examples=[window(r) for r in record.most_positive_activation_records],
        random_sample=[window(r) for r in record.random_sample],
        quantile_samples=None if record.random_sample_by_quantile is None else
        [[window(r) for r in q] for q in record.random_sample_by_quantile],
        quantile_boundaries=record.quantile_boundaries,
        stats=NodeStats(mean=finite(record.mean), variance=finite(record.variance), skewness=finite(record.skewness),
                        kurtosis=finite(record.kurtosis)),
        token_pair=token_pair, source=source,
    )


class TdbNodeDataset:
    """A TDB collated-activation dataset read as page data: ``.node(layer, index)``."""

    def __init__(self, tdb: TdbDataset, kind: str = MLP_NEURON, *, hook_point: str | None = None):
        if kind not in NODE_KINDS:
            raise UnknownNodeError(f"unknown node kind {kind!r}; expected one of {list(NODE_KINDS)}", field="kind")
        self.tdb, self.kind, self.hook_point = tdb, kind, hook_point

    def node(self, layer: int, index: int) -> NodePageData:
        record = self.tdb.read_record(layer, index)
        return page_from_tdb_record(record, self.kind, token_pair=self.tdb.token_pair, source=self.tdb.description,
                                    hook_point=self.hook_point)


def tdb_record_from_page(page: NodePageData) -> NeuronRecord:
    """Our page data as a TDB NeuronRecord (token-pair activations for heads)."""

    def record(w: ExampleWindow) -> ActivationRecord:
        values = w.token_pair_activations if page.token_pair else w.activations
        return ActivationRecord(tokens=list(w.tokens), activations=[float(x) for x in values])

    s = page.stats
    return NeuronRecord(
        layer_index=page.layer if page.layer is not None else 0, neuron_index=page.index,
        most_positive_activation_records=[record(w) for w in page.top_examples],
        random_sample=[record(w) for w in page.random_sample],
        random_sample_by_quantile=None if page.quantile_samples is None else
        [[record(w) for w in q] for q in page.quantile_samples],
        quantile_boundaries=page.quantile_boundaries,
        mean=s.mean, variance=s.variance, skewness=s.skewness, kurtosis=s.kurtosis,
    )


def tdb_dataset_path(group: dict) -> str:
    """Where :func:`export_tdb` writes a group, relative to its prefix (TDB naming)."""
    if group["kind"] == ATTN_HEAD:
        return f"{ATTN_HEAD}/collated-activations-by-token-pair"
    if group["kind"] == SAE_LATENT:
        return f"{SAE_LATENT}/{group['hook_point']}/collated-activations"
    return f"{group['kind']}/collated-activations"


def export_tdb(dataset: NodeDataset, store: BlobStore, prefix: str = "", *, progress: bool = False) -> dict[str, str]:
    """Write every node of ``dataset`` as TDB NeuronRecord files ``{path}/{layer}/{index}.json`` under
    ``prefix`` of ``store``; returns group name -> dataset path (open it with :class:`TdbDataset`).
    SAE latents at a global hook point (no layer) are written as layer 0."""
    from tqdm import tqdm
    paths = {}
    total = sum(g["n_nodes"] for g in dataset.groups)
    with tqdm(total=total, unit="node", desc="export TDB", disable=not progress) as bar:
        for g in dataset.groups:
            path = join_key(prefix, tdb_dataset_path(g))
            tdb = TdbDataset(store, path, token_pair=g["token_pair"])
            for i in range(g["n_nodes"]):
                tdb.write_record(tdb_record_from_page(dataset.node(g["kind"], g["layer"], i, hook_point=g["hook_point"])))
                bar.update()
            paths[g["name"]] = path
    return paths
