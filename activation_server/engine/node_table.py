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
from typing import NamedTuple

import torch

from mechscope.inference import gpt2_tokenizer

from .json_floats import float32_list
from .prompts import PreparedPrompts

COLUMNS = ("activation", "write_magnitude", "direct_effect", "total_effect")
SUMMARY_TARGETS = ("embeddings", "mlp", "attention_by_query", "attention_by_key")
_CHUNK = 64       # elements per chunk in :func:`row_top_k`


class TopK(NamedTuple):
    """What :func:`row_top_k` returns, as ``torch.topk`` does."""

    values: torch.Tensor      # [rows, k], best first
    indices: torch.Tensor     # [rows, k]


def _first_best(x: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """``[rows, k]``: the indices of each row's ``k`` best elements, where values tie at the k-th
    best the lowest indices, in ascending index order."""
    top = x.topk(k, dim=1, largest=largest)
    kth = top.values[:, -1:]
    tied = x == kth
    if bool((tied.sum(1, keepdim=True) == (top.values == kth).sum(1, keepdim=True)).all()):
        return top.indices.sort(dim=1).values     # no row has a tie across the k-th place: one answer
    better = x > kth if largest else x < kth
    keep = better | (tied & (tied.cumsum(1) <= k - better.sum(1, keepdim=True)))
    return keep.nonzero()[:, 1].view(x.shape[0], k)


def row_top_k(x: torch.Tensor, k: int, largest: bool = True) -> TopK:
    """The ``k`` best elements of each row of a ``[rows, n]`` tensor without NaN, best first, tied
    values in index order: the first ``k`` of a stable sort. (``torch.topk`` leaves the order of
    ties open; a fixed one keeps a request's nodes the same whether its prompts share a batch,
    padded wider, or not.)

    torch's CPU top-k copies each row into a buffer of (value, index) pairs, four times the row's
    bytes, and sorts that; for the 38k nodes or 50k tokens of a row this costs more than reading it.
    Instead the row's ``_CHUNK``-element chunks' maxima (minima) are ranked, and only the k best
    chunks plus the short tail after the last whole chunk are searched. Exact: an element better
    than the k-th best value lies in a chosen chunk (else the k chosen chunks' maxima and it would
    be k + 1 better elements), and the chosen chunks (the lowest-numbered where their maxima tie)
    hold the k-th best value's lowest-index occurrences."""
    rows, n = x.shape
    k = min(k, n)
    whole = n // _CHUNK
    if whole < 4 * k:
        index = _first_best(x, k, largest)
    else:
        by_chunk = x[:, :whole * _CHUNK].reshape(rows, whole, _CHUNK)
        chunks = _first_best(by_chunk.amax(2) if largest else by_chunk.amin(2), k, largest)      # [rows, k]
        index = (chunks.unsqueeze(2) * _CHUNK + torch.arange(_CHUNK)).reshape(rows, k * _CHUNK)
        if n > whole * _CHUNK:
            index = torch.cat([index, torch.arange(whole * _CHUNK, n).expand(rows, -1)], dim=1)
        index = index.gather(1, _first_best(x.gather(1, index), k, largest))
    values, order = x.gather(1, index).sort(dim=1, descending=largest, stable=True)
    return TopK(values, index.gather(1, order))


@dataclasses.dataclass
class Block:
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
        """What every node key of the block starts with (see :func:`node_key`)."""
        return ":".join([self.kind] + ([f"L{self.layer}"] if self.layer is not None else []) + ([self.sae] if self.sae else []))

    @property
    def indexed(self) -> bool:
        """Do the block's node keys name an index (a head, neuron or latent)?"""
        return self.kind in ("attn_head", "mlp_neuron", "sae_latent")

    def rows(self, rows: slice) -> "Block":
        """The same nodes on a slice of the batch."""
        prob = self.attention_prob[rows] if self.attention_prob is not None else None
        return Block(self.kind, self.layer, self.sae, {c: v[rows] for c, v in self.values.items()}, prob)


def node_key(block: Block, index: int, slot_q: int, slot_k: int | None) -> str:
    """``kind[:L<layer>][:<sae>][:#<index>]:@<slot>[:k<key slot>]``, e.g. ``attn_head:L2:#1:@-1:k4``."""
    key = f"{block.key_prefix}:#{index}:@{slot_q}" if block.indexed else f"{block.key_prefix}:@{slot_q}"
    return key if slot_k is None else f"{key}:k{slot_k}"


class _Flat:
    """Every block's values side by side: ``columns[c]`` is ``[batch, nodes]`` over all blocks."""

    def __init__(self, blocks: Sequence[Block], batch: int):
        self.blocks = blocks
        sizes = [b.size for b in blocks]
        self.offsets = torch.tensor([0, *itertools.accumulate(sizes)])
        self.columns = {c: torch.cat([b.values[c].reshape(batch, -1) for b in blocks], dim=1) for c in COLUMNS}
        nan = float("nan")
        self.attention_prob = torch.cat([
            b.attention_prob.reshape(batch, -1) if b.attention_prob is not None
            else torch.full((batch, b.size), nan) for b in blocks], dim=1)
        # per block: 0 = (pos,), 1 = (pos, index), 2 = (head, query, key); and its last two dims
        self.layout = torch.tensor([2 if b.kind == "attn_head" else len(b.shape) - 1 for b in blocks])
        self.dim1 = torch.tensor([b.shape[1] if len(b.shape) > 1 else 1 for b in blocks])
        self.dim2 = torch.tensor([b.shape[2] if len(b.shape) > 2 else 1 for b in blocks])

    def locate(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(block id, node index, position/query, key or -1) of global flat indices."""
        bid = torch.searchsorted(self.offsets, flat, right=True) - 1
        local = flat - self.offsets[bid]
        layout, d1, d2 = self.layout[bid], self.dim1[bid], self.dim2[bid]
        head_rest, key = local // d2, local % d2
        index = torch.where(layout == 2, head_rest // d1, torch.where(layout == 1, local % d1, 0))
        pos = torch.where(layout == 2, head_rest % d1, torch.where(layout == 1, local // d1, local))
        key = torch.where(layout == 2, key, -1)
        return bid, index, pos, key

    def flat_index(self, bid: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`locate`."""
        layout, d1, d2 = self.layout[bid], self.dim1[bid], self.dim2[bid]
        local = torch.where(layout == 2, (index * d1 + pos) * d2 + key, torch.where(layout == 1, pos * d1 + index, pos))
        return self.offsets[bid] + local


def _slot_table(prepared: PreparedPrompts) -> torch.Tensor:
    """``[batch, width]``: the shared slot of each prompt position (padding: a slot no node has)."""
    table = torch.full((prepared.batch, prepared.width), -(1 << 40), dtype=torch.long)
    for i, slots in enumerate(prepared.slots):
        table[i, :len(slots)] = torch.tensor(slots, dtype=torch.long)
    return table


Node = tuple[int, int, int, "int | None"]      # (block id, index, slot_q, slot_k)


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
    bid, index, pos, key = flat.locate(torch.stack([e.indices for e in ends]))      # [ends, prompts, k]
    slots = _slot_table(prepared)
    slot_q = slots[prompt[:, None], pos]
    slot_k = torch.where(key >= 0, slots[prompt[:, None], key.clamp(min=0)], 0)
    bid, index, slot_q, slot_k, has_key = (t.tolist() for t in (bid, index, slot_q, slot_k, key >= 0))
    return [{p: [(b, i, q, kk if with_key else None) for e in column
                 for b, i, q, kk, with_key, ok in zip(bid[e][r], index[e][r], slot_q[e][r], slot_k[e][r],
                                                      has_key[e][r], found[e][r]) if ok]
             for r, p in enumerate(prompts)} for column in by_column]


def select_nodes(flat: _Flat, prepared: PreparedPrompts, requests: Sequence[tuple[range, int]]) -> list[list[Node]]:
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


def node_rows(flat: _Flat, prepared: PreparedPrompts, requests: Sequence[range], selected: Sequence[list[Node]]
              ) -> list[list[dict]]:
    """For each request (its prompts' rows of the batch) and its selected nodes: the node table, one
    row per node with its values on each of the request's prompts (None where the node does not exist
    there), most total effect (on any of them) first. One gather reads every request's values."""
    blocks = flat.blocks
    slot_pos = [{s: pos for pos, s in enumerate(slots)} for slots in prepared.slots]
    located, gather = [], []      # gather: (prompt, block id, index, pos, key or -1) of each value read
    for rows, nodes in zip(requests, selected):
        request_spots = []
        for bid, index, slot_q, slot_k in nodes:
            spots = []
            for i in rows:
                q = slot_pos[i].get(slot_q)
                k = slot_pos[i].get(slot_k) if slot_k is not None else None
                if q is None or (slot_k is not None and k is None):
                    spots.append((q, k, None))
                    continue
                spots.append((q, k, len(gather)))
                gather.append((i, bid, index, q, -1 if k is None else k))
            request_spots.append(spots)
        located.append(request_spots)
    i_t, *where = torch.tensor(gather, dtype=torch.long).reshape(-1, 5).unbind(1)
    f_t = flat.flat_index(*where)
    picked_t = torch.stack([flat.columns[c][i_t, f_t] for c in COLUMNS] + [flat.attention_prob[i_t, f_t]], -1)
    picked, missing = float32_list(picked_t), picked_t[:, :len(COLUMNS)].isnan().any(-1).tolist()
    tables = []
    for nodes, request_spots in zip(selected, located):
        rows = []
        for (bid, index, slot_q, slot_k), spots in zip(nodes, request_spots):
            block = blocks[bid]
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
                "key": node_key(block, index, slot_q, slot_k), "kind": block.kind, "layer": block.layer,
                "index": index, "sae": block.sae, "positions": [q for q, _, _ in spots],
                "key_positions": [k for _, k, _ in spots] if block.kind == "attn_head" else None, "values": values}))
        rows.sort(key=lambda r: r[0])
        tables.append([row for _, row in rows])
    return tables


def node_tables(blocks: Sequence[Block], prepared: PreparedPrompts, requests: Sequence[tuple[range, int]]
                ) -> list[list[dict]]:
    """The rows of each attribution answer's ``nodes`` (:class:`~.schemas.NodeRow`'s fields) for
    requests sharing a batch (each: its prompts' rows and its top-k): each column's top (and bottom)
    k per prompt, unioned over the request's prompts. The tensor work runs once for the batch."""
    flat = _Flat(blocks, prepared.batch)
    return node_rows(flat, prepared, [rows for rows, _ in requests], select_nodes(flat, prepared, requests))


def node_table(blocks: Sequence[Block], prepared: PreparedPrompts, top_k: int) -> list[dict]:
    """:func:`node_tables` for one request whose prompts are the whole batch."""
    return node_tables(blocks, prepared, [(range(prepared.batch), top_k)])[0]


def token_summaries(blocks: Sequence[Block], prepared: PreparedPrompts, tokens: list[list[str]]
                    ) -> list[list[dict]]:
    """Per prompt, per token (``tokens``: each prompt's token strings): the sums of total (and
    direct) effects by component type."""
    shape = (prepared.batch, prepared.width)
    sums = {t: torch.zeros(shape) for t in SUMMARY_TARGETS}
    direct = {t: torch.zeros(shape) for t in SUMMARY_TARGETS}
    for b in blocks:
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


def predictions(logits: torch.Tensor, extra: Sequence[Sequence[int]] | None = None, k: int = 10
                ) -> list[tuple[list, list, list]]:
    """Per row of ``logits`` ``[batch, vocab]``: its top and bottom ``k`` next tokens and its
    ``extra`` ones (a list of token ids per row), as prediction dicts; rank 1 = highest logit (tied
    tokens share the best rank among them)."""
    logits = logits.float()
    batch, vocab = logits.shape
    k = min(k, vocab)
    # rank = 1 + the number of strictly larger logits, counted without a pass over the vocabulary
    # where the top/bottom k already tell it
    top_logits, top_ids = row_top_k(logits, k)                                    # descending
    # every logit above a top-k logit is in the top k: 1 + the first position of its value
    top_ranks = (top_logits.unsqueeze(2) == top_logits.unsqueeze(1)).to(torch.uint8).argmax(2) + 1
    bottom_logits, bottom_ids = row_top_k(logits, k, largest=False)                   # ascending
    extra = [list(e) for e in extra] if extra is not None else [[] for _ in range(batch)]
    if len(extra) != batch:
        raise ValueError(f"{len(extra)} lists of extra tokens for {batch} rows of logits")
    n_extra = max(map(len, extra), default=0)     # rows with fewer repeat their first (cut below)
    extra_ids = torch.tensor([e + e[:1] * (n_extra - len(e)) if e else [0] * n_extra for e in extra],
                             dtype=torch.long).reshape(batch, n_extra)
    extra_logits = logits.gather(1, extra_ids)
    # full counts only for the extra tokens and the bottom k's largest value (ties at that value
    # may reach beyond the bottom k; below it, every smaller-or-equal logit is in the bottom k)
    counted = torch.cat([bottom_logits[:, -1:], extra_logits], dim=1)
    # x > c exactly when x - c > 0 (finite floats: the difference of unequal ones is never 0), so
    # the count is a sum of signs, in float32 (exact below 2**24): a third of comparing and summing
    # booleans; two rows at a time, so that the [rows, 1 + extra, vocab] differences stay in cache
    # (for 8 rows at once they do not, and the subtraction alone took 15 times as long as for 2)
    larger = torch.cat([(rows.unsqueeze(1) - c.unsqueeze(2)).clamp_(min=0).sign_().sum(2)
                        for rows, c in zip(logits.split(2), counted.split(2))]).long()      # [batch, 1 + extra]
    at_most = (bottom_logits.unsqueeze(1) <= bottom_logits.unsqueeze(2)).sum(2)   # within the bottom k
    boundary = bottom_logits == bottom_logits[:, -1:]
    bottom_ranks = torch.where(boundary, larger[:, :1], vocab - at_most) + 1
    ids = torch.cat([top_ids, bottom_ids, extra_ids], dim=1)
    chosen = torch.cat([top_logits, bottom_logits, extra_logits], dim=1)
    ranks = torch.cat([top_ranks, bottom_ranks, larger[:, 1:] + 1], dim=1)
    top1 = top_logits[:, :1]     # subtracted before exp as log_softmax does, for the same rounding
    probs = ((chosen - top1) - (logits - top1).exp().sum(-1, keepdim=True).log()).exp()
    tok = gpt2_tokenizer()
    out = []
    chosen_logits, chosen_probs = float32_list(torch.stack([chosen, probs]))
    for row_extra, row_ids, row_logits, row_probs, row_ranks in zip(extra, ids.tolist(), chosen_logits,
                                                                    chosen_probs, ranks.tolist()):
        used = 2 * k + len(row_extra)
        preds = [{"token": s, "token_id": t, "logit": x, "prob": p, "rank": r}
                 for s, t, x, p, r in zip(tok.token_strs(row_ids[:used]), row_ids, row_logits, row_probs, row_ranks)]
        out.append((preds[:k], preds[k:2 * k], preds[2 * k:]))
    return out
