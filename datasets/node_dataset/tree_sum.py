"""Float sums over a build's batches, added in a fixed binary tree so that partial sums merge exactly.

Floating-point addition is not associative, so a running sum ``((b0 + b1) + b2) + b3`` and a merge
of two shards' sums ``(b0 + b1) + (b2 + b3)`` differ in their last bits. Here every batch ``i`` is a
leaf of one binary tree over batch indices: block ``(level, index)`` covers batches
``[index * 2**level, (index + 1) * 2**level)`` and its value is always ``left child + right child``.
A partial sum is the set of maximal complete blocks of the batches it has seen; merging two
partial sums of disjoint batches joins sibling blocks bottom-up, so the blocks, and each block's
bits, depend only on which batches were seen, never on the order or grouping of the merges. The
total folds the blocks left to right (by first batch).

A build that streams batches ``0, 1, 2, ...`` in order (or a shard of ``2**m`` batches starting at a
multiple of ``2**m``) holds at most one block per level: :func:`tree_add` keeps them in a fixed-shape
tensor ``[levels, ...]`` plus each level's block index (-1: empty), so they checkpoint as they are.
The sums are also more accurate than a running sum (pairwise summation).
"""

from __future__ import annotations

import torch

from mechscope.inference.errors import InvalidInputError

Blocks = dict[tuple[int, int], torch.Tensor]
"""(level, index) -> the block's sum."""


def levels_for(num_batches: int) -> int:
    """Levels a build of ``num_batches`` batches needs (its top block is at level ``bit_length - 1``)."""
    return max(1, int(num_batches).bit_length())


def tree_add(levels: torch.Tensor, blocks: torch.Tensor, batch: int, value: torch.Tensor) -> None:
    """Add batch ``batch``'s ``value`` to the per-level sums ``levels`` [L, ...] with block indices
    ``blocks`` [L] (in place). Batches must come in order from an aligned start."""
    index, level = int(batch), 0
    while True:
        if level >= levels.shape[0]:
            raise InvalidInputError(f"batch {batch} does not fit a tree of {levels.shape[0]} levels", field="batch")
        occupant = int(blocks[level])
        if occupant < 0:
            break
        if index % 2 == 0 or occupant != index - 1:
            raise InvalidInputError(f"batch {batch} is not the next batch of this partial sum (level {level} "
                                    f"holds block {occupant})", field="batch")
        value = levels[level] + value
        blocks[level] = -1
        index, level = index >> 1, level + 1
    levels[level] = value
    blocks[level] = index


def blocks_of(levels: torch.Tensor, blocks: torch.Tensor) -> Blocks:
    return {(level, int(index)): levels[level] for level, index in enumerate(blocks.tolist()) if index >= 0}


def insert_block(target: Blocks, level: int, index: int, value: torch.Tensor) -> None:
    """Put a block into ``target`` (in place), joining it with its sibling, and so on upwards."""
    while (level, index ^ 1) in target:
        sibling = target.pop((level, index ^ 1))
        value = sibling + value if index % 2 else value + sibling
        index, level = index >> 1, level + 1
    if (level, index) in target:
        raise InvalidInputError(f"block ({level}, {index}) was merged twice: the partial sums overlap", field="blocks")
    target[(level, index)] = value


def merge_blocks(a: Blocks, b: Blocks) -> Blocks:
    """The blocks of two partial sums over disjoint batches (neither argument is changed)."""
    out = dict(a)
    for (level, index), value in sorted(b.items()):
        insert_block(out, level, index, value)
    return out


def blocks_total(blocks: Blocks, like: torch.Tensor) -> torch.Tensor:
    """The sum of all blocks, folded left to right by first batch (zeros like ``like`` if none)."""
    total = None
    for _, _, value in sorted((index << level, level, value) for (level, index), value in blocks.items()):
        total = value.clone() if total is None else total + value
    return torch.zeros_like(like) if total is None else total


def tree_total(levels: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    return blocks_total(blocks_of(levels, blocks), levels[0])


def blocks_to_levels(blocks: Blocks, like_levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``blocks`` (at most one per level, e.g. all batches ``0 .. n-1``) as new per-level sums shaped
    like ``like_levels`` and their block indices."""
    levels = torch.zeros_like(like_levels)
    indices = torch.full((like_levels.shape[0],), -1, dtype=torch.long)
    for (level, index), value in blocks.items():
        if level >= levels.shape[0] or int(indices[level]) >= 0:
            raise InvalidInputError(f"block ({level}, {index}) does not fit one block per level of "
                                    f"{levels.shape[0]} levels", field="blocks")
        levels[level] = value
        indices[level] = index
    return levels, indices
