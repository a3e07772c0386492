"""Exact, ordered top-k: the first k of a stable sort. ``torch.topk`` leaves the order of tied
values open; a fixed one keeps a request's nodes the same whether its prompts share a batch, padded
wider, or not."""

from __future__ import annotations

from typing import NamedTuple

import torch


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
    values in index order: the first ``k`` of a stable sort."""
    index = _first_best(x, min(k, x.shape[1]), largest)
    values, order = x.gather(1, index).sort(dim=1, descending=largest, stable=True)
    return TopK(values, index.gather(1, order))
