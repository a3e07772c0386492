"""From node tensors to the tables of an attribution answer, on whole tensors.

One answer holds a few hundred nodes × prompts, each prompt's top/bottom predictions and its
per-token summaries. Built value by value in Python, that costs more than the forward and backward
pass that produced the numbers once concurrent requests share passes; so each step here is a few
tensor operations over every prompt at once (top-k pairs per column, one gather for every
selected value, vocabulary-wide rank counts only where the top/bottom k cannot tell), and Python
only assembles plain JSON-ready dicts from the resulting lists: the server serializes them as they
are, Python callers get them validated into the response model.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence

import torch

from .json_floats import float32_list
from .prompts import PreparedPrompts
from .top_k import row_top_k

COLUMNS = ("activation", "write_magnitude", "direct_effect", "total_effect")
SUMMARY_TARGETS = ("embeddings", "mlp", "attention_by_query", "attention_by_key")


@dataclasses.dataclass
class NodeGroup:
    """All nodes of one component type in one layer, as ``[batch, *shape]`` value tensors.

    ``shape`` is (pos, index) for neurons/latents, (head, query, key) for heads, (pos,) for
    embeddings and SAE errors."""

    kind: str
    layer: int | None
    sae: str | None
    values: dict[str, torch.Tensor]    # column -> [batch, *shape]; NaN where the node does not exist
    attention_prob: torch.Tensor | None = None

    @functools.cached_property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values["activation"].shape[1:])

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @functools.cached_property
    def key_prefix(self) -> str:
        """What every node key of the group starts with (see :func:`_node_key`)."""
        return ":".join([self.kind] + ([f"L{self.layer}"] if self.layer is not None else []) + ([self.sae] if self.sae else []))

    @property
    def has_index(self) -> bool:
        """Do the group's node keys name an index (a head, neuron or latent)?"""
        return self.kind in ("attn_head", "mlp_neuron", "sae_latent")

    def rows(self, rows: slice) -> "NodeGroup":
        """The same nodes on a slice of the batch."""
        prob = self.attention_prob[rows] if self.attention_prob is not None else None
        return NodeGroup(self.kind, self.layer, self.sae, {c: v[rows] for c, v in self.values.items()}, prob)


def _node_key(group: NodeGroup, index: int, slot_q: int, slot_k: int | None) -> str:
    """``kind[:L<layer>][:<sae>][:#<index>]:@<slot>[:k<key slot>]``, e.g. ``attn_head:L2:#1:@-1:k4``."""
    key = f"{group.key_prefix}:#{index}:@{slot_q}" if group.has_index else f"{group.key_prefix}:@{slot_q}"
    return key if slot_k is None else f"{key}:k{slot_k}"


class _Flat:
    """Every group's values side by side: ``columns[c]`` is ``[batch, nodes]`` over all groups."""

    def __init__(self, groups: Sequence[NodeGroup], batch: int):
        self.groups = groups
        sizes = [b.size for b in groups]
        self.offsets = torch.tensor([0, *itertools.accumulate(sizes)])
        self.columns = {c: torch.cat([b.values[c].reshape(batch, -1) for b in groups], dim=1) for c in COLUMNS}
        nan = float("nan")
        self.attention_prob = torch.cat([
            b.attention_prob.reshape(batch, -1) if b.attention_prob is not None
            else torch.full((batch, b.size), nan) for b in groups], dim=1)
        # per group: 0 = (pos,), 1 = (pos, index), 2 = (head, query, key); and its last two dims
        self.layout = torch.tensor([2 if b.kind == "attn_head" else len(b.shape) - 1 for b in groups])
        self.dim1 = torch.tensor([b.shape[1] if len(b.shape) > 1 else 1 for b in groups])
        self.dim2 = torch.tensor([b.shape[2] if len(b.shape) > 2 else 1 for b in groups])

    def locate(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(group id, node index, position/query, key or -1) of global flat indices."""
        gid = torch.searchsorted(self.offsets, flat, right=True) - 1
        local = flat - self.offsets[gid]
        layout, d1, d2 = self.layout[gid], self.dim1[gid], self.dim2[gid]
        head_rest, key = local // d2, local % d2
        index = torch.where(layout == 2, head_rest // d1, torch.where(layout == 1, local % d1, 0))
        pos = torch.where(layout == 2, head_rest % d1, torch.where(layout == 1, local // d1, local))
        key = torch.where(layout == 2, key, -1)
        return gid, index, pos, key

    def flat_index(self, gid: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`locate`."""
        layout, d1, d2 = self.layout[gid], self.dim1[gid], self.dim2[gid]
        local = torch.where(layout == 2, (index * d1 + pos) * d2 + key, torch.where(layout == 1, pos * d1 + index, pos))
        return self.offsets[gid] + local


def _slot_table(prepared: PreparedPrompts) -> torch.Tensor:
    """``[batch, width]``: the shared slot of each prompt position (padding: a slot no node has)."""
    table = torch.full((prepared.batch, prepared.width), -(1 << 40), dtype=torch.long)
    for i, slots in enumerate(prepared.slots):
        table[i, :len(slots)] = torch.tensor(slots, dtype=torch.long)
    return table


Node = tuple[int, int, int, "int | None"]      # (group id, index, slot_q, slot_k)


def _column_picks(flat: _Flat, prepared: PreparedPrompts, prompts: list[int], k: int) -> list[dict[int, list[Node]]]:
    """Per column, per prompt of ``prompts`` (rows of the batch): the column's top ``k`` then bottom
    ``k`` nodes on that prompt (top only for the write magnitude), best first."""
    prompt = torch.tensor(prompts)
    rows = None if prompts == list(range(prepared.batch)) else prompt
    ends, by_column = [], []
    # one column at a time: its [batch, nodes] stays in cache through the copies and top-k passes
    # (all four stacked do not, and each pass then goes to memory)
    for col in COLUMNS:
        values = flat.columns[col] if rows is None else flat.columns[col][rows]
        # NaN (no such node) sorts last both ways: -inf for the top, and for the bottom (the top of -values)
        column_ends = [row_top_k(values.nan_to_num(nan=-math.inf), k)]
        if col != "write_magnitude":
            column_ends.append(row_top_k(values.neg().nan_to_num_(nan=-math.inf), k))
        by_column.append(range(len(ends), len(ends) + len(column_ends)))
        ends += column_ends
    found = torch.stack([e.values > -math.inf for e in ends]).tolist()
    gid, index, pos, key = flat.locate(torch.stack([e.indices for e in ends]))      # [ends, prompts, k]
    slots = _slot_table(prepared)
    slot_q = slots[prompt[:, None], pos]
    slot_k = torch.where(key >= 0, slots[prompt[:, None], key.clamp(min=0)], 0)
    gid, index, slot_q, slot_k, has_key = (t.tolist() for t in (gid, index, slot_q, slot_k, key >= 0))
    return [{p: [(b, i, q, kk if with_key else None) for e in column
                 for b, i, q, kk, with_key, ok in zip(gid[e][r], index[e][r], slot_q[e][r], slot_k[e][r],
                                                      has_key[e][r], found[e][r]) if ok]
             for r, p in enumerate(prompts)} for column in by_column]


def _select_nodes(flat: _Flat, prepared: PreparedPrompts, requests: Sequence[tuple[range, int]]) -> list[list[Node]]:
    """For each request (its prompts' rows of the batch and its top-k): the union over its prompts
    of each column's top and bottom k nodes (top only for the write magnitude), in order: column,
    prompt, top before bottom, best first. Requests with the same k share one top-k pass over
    their prompts (so a request's picks among tied values are those it gets alone)."""
    n = flat.columns[COLUMNS[0]].shape[-1]
    by_k: dict[int, list[int]] = {}
    for j, (_, k) in enumerate(requests):
        by_k.setdefault(min(k, n), []).append(j)
    out: list[list[Node]] = [[] for _ in requests]
    for k, members in by_k.items():
        picks = _column_picks(flat, prepared, [p for j in members for p in requests[j][0]], k)
        for j in members:
            out[j] = list(dict.fromkeys(node for column in picks for p in requests[j][0] for node in column[p]))
    return out


def _node_rows(flat: _Flat, prepared: PreparedPrompts, requests: Sequence[range], selected: Sequence[list[Node]]
              ) -> list[list[dict]]:
    """For each request (its prompts' rows of the batch) and its selected nodes: the node table, one
    row per node with its values on each of the request's prompts (None where the node does not exist
    there), most total effect (on any of them) first. One gather reads every request's values."""
    groups = flat.groups
    slot_pos = [{s: pos for pos, s in enumerate(slots)} for slots in prepared.slots]
    located, gather = [], []      # gather: (prompt, group id, index, pos, key or -1) of each value read
    for rows, nodes in zip(requests, selected):
        request_spots = []
        for gid, index, slot_q, slot_k in nodes:
            spots = []
            for i in rows:
                q = slot_pos[i].get(slot_q)
                k = slot_pos[i].get(slot_k) if slot_k is not None else None
                if q is None or (slot_k is not None and k is None):
                    spots.append((q, k, None))
                    continue
                spots.append((q, k, len(gather)))
                gather.append((i, gid, index, q, -1 if k is None else k))
            request_spots.append(spots)
        located.append(request_spots)
    i_t, *where = torch.tensor(gather, dtype=torch.long).reshape(-1, 5).unbind(1)
    f_t = flat.flat_index(*where)
    picked_t = torch.stack([flat.columns[c][i_t, f_t] for c in COLUMNS] + [flat.attention_prob[i_t, f_t]], -1)
    picked, missing = float32_list(picked_t), picked_t[:, :len(COLUMNS)].isnan().any(-1).tolist()
    tables = []
    for nodes, request_spots in zip(selected, located):
        rows = []
        for (gid, index, slot_q, slot_k), spots in zip(nodes, request_spots):
            group = groups[gid]
            values, best = [], 0.0
            for q, k, g in spots:
                if g is None or missing[g]:
                    values.append(None)
                    continue
                act, write, direct, total, prob = picked[g]
                best = max(best, abs(total))
                values.append({"activation": act, "write_magnitude": write, "direct_effect": direct,
                               "total_effect": total, "attention_prob": None if math.isnan(prob) else prob})
            rows.append((-best, {
                "key": _node_key(group, index, slot_q, slot_k), "kind": group.kind, "layer": group.layer,
                "index": index, "sae": group.sae, "positions": [q for q, _, _ in spots],
                "key_positions": [k for _, k, _ in spots] if group.kind == "attn_head" else None, "values": values}))
        rows.sort(key=lambda r: r[0])
        tables.append([row for _, row in rows])
    return tables


def node_tables(groups: Sequence[NodeGroup], prepared: PreparedPrompts, requests: Sequence[tuple[range, int]]
                ) -> list[list[dict]]:
    """The rows of each attribution answer's ``nodes`` (:class:`~..schemas.NodeRow`'s fields) for
    requests sharing a batch (each: its prompts' rows and its top-k): each column's top (and bottom)
    k per prompt, unioned over the request's prompts. The tensor work runs once for the batch."""
    flat = _Flat(groups, prepared.batch)
    return _node_rows(flat, prepared, [rows for rows, _ in requests], _select_nodes(flat, prepared, requests))


def node_table(groups: Sequence[NodeGroup], prepared: PreparedPrompts, top_k: int) -> list[dict]:
    """:func:`node_tables` for one request whose prompts are the whole batch."""
    return node_tables(groups, prepared, [(range(prepared.batch), top_k)])[0]


def token_summaries(groups: Sequence[NodeGroup], prepared: PreparedPrompts, tokens: list[list[str]]
                    ) -> list[list[dict]]:
    """Per prompt, per token (``tokens``: each prompt's token strings): the sums of total (and
    direct) effects by component type."""
    shape = (prepared.batch, prepared.width)
    sums = {t: torch.zeros(shape) for t in SUMMARY_TARGETS}
    direct = {t: torch.zeros(shape) for t in SUMMARY_TARGETS}
    for b in groups:
        te, de = b.values["total_effect"], b.values["direct_effect"]      # NaN where no node: sums skip it
        if b.kind == "attn_head":          # [batch, head, query, key]
            parts = {"attention_by_query": (te.nansum((1, 3)), de.nansum((1, 3))),
                     "attention_by_key": (te.nansum((1, 2)), de.nansum((1, 2)))}
        else:
            te, de = (te.nansum(-1), de.nansum(-1)) if te.dim() == 3 else (te.nan_to_num(), de.nan_to_num())
            if b.kind in ("embedding", "pos_embedding"):
                target = "embeddings"
            elif b.kind in ("sae_latent", "sae_error") and b.sae and b.sae.endswith("hook_attn_out"):
                target = "attention_by_query"
            else:
                target = "mlp"
            parts = {target: (te, de)}
        for target, (t, d) in parts.items():
            sums[target] += t
            direct[target] += d
    names = [*sums, *(f"direct_{t}" for t in direct)]
    columns = dict(zip(names, float32_list(torch.stack([*sums.values(), *direct.values()]))))
    return [[{"token": tokens[i][p], **{name: v[i][p] for name, v in columns.items()}} for p in range(n)]
            for i, n in enumerate(prepared.lengths)]
