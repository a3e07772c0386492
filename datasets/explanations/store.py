"""Explanations beside a node dataset, on the dataset's own blob store (local or Azure).

Layout under the dataset's prefix::

    explanations/mechscope/{explainer}/{group}.json   mechscope's: per node of the group, its latest
                                                      Explanation by that explainer
    explanations/{layer}/{index}.jsonl                TDB's public layout (MLP neurons), read only
    {kind path}/explanations/{layer}/{index}.jsonl    what :func:`export_tdb_explanations` writes
                                                      (kind path: mlp_neuron, attn_head,
                                                      sae_latent/{hook point}), read too

Every write replaces one blob atomically (the stores guarantee it), so a killed run loses at most
the group it was writing and a rerun resumes from the groups already written.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

from mechscope.datasets.node_dataset.records import ATTN_HEAD, MLP_NEURON, SAE_LATENT, group_name
from mechscope.datasets.stores import BlobNotFoundError, BlobStore, join_key

from .records import Explanation, ExplanationError, NodeKey
from .tdb_format import dumps, parse_line_file, to_results

FORMAT_NAME = "mechscope-explanations"
FORMAT_VERSION = 1
ROOT = "explanations"
OURS = f"{ROOT}/mechscope"
_TDB_FILE = re.compile(r"^(?:(.+)/)?explanations/(\d+)/(\d+)\.jsonl$")


def kind_path(kind: str, hook_point: str | None) -> str:
    """Where a kind's TDB-layout files live (beside its ``collated-activations``)."""
    return f"{SAE_LATENT}/{hook_point}" if kind == SAE_LATENT else kind


class ExplanationStore:
    """Read and write the explanations of the node dataset at ``prefix`` of ``store``. Thread-safe
    within one process (read-modify-write of a group blob holds a lock)."""

    def __init__(self, store: BlobStore, prefix: str = ""):
        self.store, self.prefix = store, prefix.strip("/")
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"explanations of '{self.prefix}' in {self.store.description}"

    def _key(self, *parts: str) -> str:
        return join_key(self.prefix, *parts)

    def group_key(self, explainer: str, group: str) -> str:
        return self._key(OURS, explainer, f"{group}.json")

    # ---- mechscope's group blobs -------------------------------------------------------------------
    def load_group(self, explainer: str, group: str) -> dict[int, Explanation]:
        return self.load_group_doc(explainer, group)[1]

    def load_group_doc(self, explainer: str, group: str) -> tuple[str | None, dict[int, Explanation]]:
        """(the id of the dataset the group's explanations were made from, the explanations)."""
        key = self.group_key(explainer, group)
        try:
            raw = self.store.read(key)
        except BlobNotFoundError:
            return None, {}
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ExplanationError(f"{key} in {self.store.description} is not valid JSON ({error})") from None
        if doc.get("format") != FORMAT_NAME or doc.get("format_version") != FORMAT_VERSION:
            raise ExplanationError(f"{key} in {self.store.description} is format {doc.get('format')!r} version "
                                   f"{doc.get('format_version')!r}; expected {FORMAT_NAME!r} {FORMAT_VERSION}")
        return doc.get("dataset_id"), {int(i): Explanation.from_json(e) for i, e in doc.get("nodes", {}).items()}

    def save_group(self, explainer: str, group: dict, entries: dict[int, Explanation], *,
                   dataset_id: str | None = None) -> None:
        """Replace the group's blob with ``entries`` (atomically)."""
        doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "explainer": explainer,
               "group": group["name"], "kind": group["kind"], "layer": group["layer"],
               "hook_point": group.get("hook_point"), "dataset_id": dataset_id,
               "nodes": {str(i): entries[i].to_json() for i in sorted(entries)}}
        self.store.write(self.group_key(explainer, group["name"]), dumps(doc).encode())

    def merge_group(self, explainer: str, group: dict, entries: dict[int, Explanation], *,
                    dataset_id: str | None = None) -> dict[int, Explanation]:
        """Add or replace ``entries`` in the group's blob; returns the group's explanations."""
        with self._lock:
            merged = self.load_group(explainer, group["name"])
            merged.update(entries)
            self.save_group(explainer, group, merged, dataset_id=dataset_id)
        return merged

    def explainers(self) -> list[str]:
        names = set()
        for key in self.store.list(self._key(OURS) + "/"):
            rest = key[len(self._key(OURS)) + 1:]
            if "/" in rest:
                names.add(rest.split("/", 1)[0])
        return sorted(names)

    def iter_ours(self) -> Iterator[tuple[NodeKey, Explanation]]:
        for explainer in self.explainers():
            for key in list(self.store.list(self._key(OURS, explainer) + "/")):
                raw = json.loads(self.store.read(key))
                for i, e in raw.get("nodes", {}).items():
                    yield (NodeKey(raw["kind"], raw["layer"], int(i), raw.get("hook_point")),
                           Explanation.from_json(e))

    # ---- TDB-layout files -------------------------------------------------------------------------
    def _tdb_candidates(self, node: NodeKey) -> list[str]:
        layer = node.layer if node.layer is not None else 0
        keys = [self._key(kind_path(node.kind, node.hook_point), ROOT, str(layer), f"{node.index}.jsonl")]
        if node.kind == MLP_NEURON:
            keys.insert(0, self._key(ROOT, str(layer), f"{node.index}.jsonl"))
        return keys

    def tdb_for_node(self, node: NodeKey) -> list[Explanation]:
        out: list[Explanation] = []
        for key in self._tdb_candidates(node):
            try:
                data = self.store.read(key)
            except BlobNotFoundError:
                continue
            out.extend(parse_line_file(data, source=f"{key} in {self.store.description}")[2])
        return out

    def iter_tdb(self) -> Iterator[tuple[NodeKey, Explanation]]:
        base = self._key("")
        for key in self.store.list(base):
            rel = key[len(base) + 1:] if base else key
            m = _TDB_FILE.match(rel)
            if m is None:
                continue
            node = _node_of_tdb_path(m.group(1) or "", int(m.group(2)), int(m.group(3)))
            if node is None:
                continue
            for e in parse_line_file(self.store.read(key), source=f"{key} in {self.store.description}")[2]:
                yield node, e

    # ---- everything about one node / everything -------------------------------------------------
    def for_node(self, node: NodeKey) -> list[Explanation]:
        """Every explanation of ``node``: mechscope's (one per explainer), then TDB-layout files'."""
        group = group_name(node.kind, node.layer, node.hook_point)
        found = []
        for explainer in self.explainers():
            e = self.load_group(explainer, group).get(node.index)
            if e is not None:
                found.append(e)
        return found + self.tdb_for_node(node)

    def iter_all(self) -> Iterator[tuple[NodeKey, Explanation]]:
        yield from self.iter_ours()
        yield from self.iter_tdb()


def _node_of_tdb_path(base: str, layer: int, index: int) -> NodeKey | None:
    if base in ("", MLP_NEURON):
        return NodeKey(MLP_NEURON, layer, index)
    if base == ATTN_HEAD:
        return NodeKey(ATTN_HEAD, layer, index)
    if base.startswith(SAE_LATENT + "/"):
        from mechscope.inference.hooks import layer_of
        hook_point = base[len(SAE_LATENT) + 1:]
        return NodeKey(SAE_LATENT, layer_of(hook_point), index, hook_point)
    return None


def export_tdb_explanations(source: ExplanationStore, dst: BlobStore, prefix: str = "", *, extras: bool = True,
                            progress: bool = False) -> int:
    """Write every mechscope explanation as TDB files ``{prefix}/{kind path}/explanations/{layer}/{index}.jsonl``
    (one NeuronSimulationResults line per node, its explanations from every explainer); returns the
    number of files."""
    from tqdm import tqdm
    by_node: dict[NodeKey, list[Explanation]] = {}
    for node, e in source.iter_ours():
        by_node.setdefault(node, []).append(e)
    for node, explanations in tqdm(sorted(by_node.items(), key=lambda kv: str(kv[0])), unit="node",
                                   desc="export explanations", disable=not progress):
        layer = node.layer if node.layer is not None else 0
        key = join_key(prefix, kind_path(node.kind, node.hook_point), ROOT, str(layer), f"{node.index}.jsonl")
        dst.write(key, (dumps(to_results(layer, node.index, explanations, extras=extras)) + "\n").encode())
    return len(by_node)
