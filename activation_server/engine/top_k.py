"""Exact, ordered top-k: the first k of a stable sort, without sorting whole rows."""

from __future__ import annotations

from typing import NamedTuple

import torch

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
