"""Deterministic sampling for a node-dataset build: random priorities as a hash of (seed, corpus
row), example windows around a token, the merge of kept slots under one total order, and the
random sample of corpus rows shared by every node (:class:`SharedSample`)."""

from __future__ import annotations

import numpy as np
import torch

from mechscope.inference.errors import InvalidInputError

from .config import BuildConfig

SALT_RANDOM_SAMPLE, SALT_RANDOM_POSITION, SALT_QUANTILE = 1, 2, 3
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def row_uniforms(rows: torch.Tensor, seed: int, salt: int) -> torch.Tensor:
    """A float64 in [0, 1) per corpus row index: splitmix64 of (seed, salt, row)."""
    x = rows.cpu().numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed * 1_000_003 + salt], dtype=np.uint64))
        z = _splitmix64(x ^ base)
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


def window_starts(pos: torch.Tensor, cfg: BuildConfig, n_ctx: int) -> torch.Tensor:
    before = cfg.window - 1 - cfg.window_after
    return (pos.long() - before).clamp(min=0, max=n_ctx - cfg.window)


def gather_windows(x: torch.Tensor, b: torch.Tensor, start: torch.Tensor, width: int,
                   n: torch.Tensor | None = None) -> torch.Tensor:
    """``x[b, start:start+width(, n)]`` for each example: [M, width] (or [M, width, ...])."""
    cols = start.long()[:, None] + torch.arange(width)
    if n is None:
        return x[b.long()[:, None], cols]
    return x[b.long()[:, None], cols, n.long()[:, None]]


def select_slots(old_keys: torch.Tensor, old_rows: torch.Tensor, new_keys: torch.Tensor, new_rows: torch.Tensor, *,
                 descending: bool) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Merge per unit the kept entries (``old_keys`` [U, S], unordered slots) with a batch's candidates
    (``new_keys`` [U, B]): the S best keys win, ties going to the lower corpus row (empty slots have
    row -1 and the worst key). Returns ((unit, slot) of every slot that now holds a batch entry, the
    batch index of that entry) — only those slots need writing; the other slots keep their entry."""
    u_count, n_slots = old_keys.shape
    rows = torch.cat([old_rows, new_rows.expand(u_count, -1)], 1)
    keys = torch.cat([old_keys.to(new_keys.dtype), new_keys], 1)
    by_row = torch.sort(rows, dim=1, stable=True).indices
    by_key = torch.sort(keys.gather(1, by_row), dim=1, descending=descending, stable=True).indices[:, :n_slots]
    chosen = by_row.gather(1, by_key)  # [U, S] indices into old slots + batch
    from_batch = chosen >= n_slots
    kept = torch.zeros(u_count, n_slots + 1, dtype=torch.bool)
    kept.scatter_(1, torch.where(from_batch, n_slots, chosen), True)
    free_u, free_s = (~kept[:, :n_slots]).nonzero(as_tuple=True)  # evicted slots, unit-major
    new_u, new_j = from_batch.nonzero(as_tuple=True)  # entering entries, unit-major: same count per unit
    return (free_u, free_s), chosen[new_u, new_j] - n_slots


def slot_order(rows: torch.Tensor, keys: torch.Tensor, *, descending: bool) -> torch.Tensor:
    """Per unit, its slots ([U, S]) sorted by key, ties going to the lower row (empty slots, row -1,
    hold the worst key and so come last): the kept entries' canonical order."""
    by_row = torch.sort(rows, dim=1, stable=True).indices
    return by_row.gather(1, torch.sort(keys.gather(1, by_row), dim=1, descending=descending, stable=True).indices)


class SharedSample:
    """The random-sample rows shared by every node: smallest random priorities win."""

    def __init__(self, cfg: BuildConfig, n_ctx: int):
        self.cfg, self.n_ctx = cfg, n_ctx
        r, w = cfg.random_samples, cfg.window
        self.t = {
            "rand_prio": torch.full((r,), float("inf"), dtype=torch.float64),
            "rand_row": torch.full((r,), -1, dtype=torch.long),
            "rand_start": torch.zeros(r, dtype=torch.int32),
            "rand_tok": torch.zeros(r, w, dtype=torch.int32),
        }

    def update(self, tokens: torch.Tensor, row0: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Merge a batch; returns the slots that now hold a row of this batch, those batch rows and
        their window starts (slots are unordered; the priorities say which rows win)."""
        rows = torch.arange(row0, row0 + tokens.shape[0])
        prio = row_uniforms(rows, self.cfg.seed, SALT_RANDOM_SAMPLE)
        slots, new_index = select_slots(self.t["rand_prio"][None], self.t["rand_row"][None], prio[None], rows,
                                        descending=False)
        slots, b = slots[1], new_index
        centre = (row_uniforms(rows[b], self.cfg.seed, SALT_RANDOM_POSITION) * self.n_ctx).long()
        start = window_starts(centre, self.cfg, self.n_ctx)
        self.t["rand_prio"][slots] = prio[b]
        self.t["rand_row"][slots] = rows[b]
        self.t["rand_start"][slots] = start.int()
        self.t["rand_tok"][slots] = gather_windows(tokens, b, start, self.cfg.window).int()
        return slots, b, start

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.t)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_into(self.t, state, "shared sample")

    def ordered(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The sample's slots by priority (ties: lower row; empty slots last), and that order."""
        order = slot_order(self.t["rand_row"][None], self.t["rand_prio"][None], descending=False)[0]
        return {name: value[order] for name, value in self.t.items()}, order


def load_into(target: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str) -> None:
    missing = sorted(set(target) - set(state))
    unknown = sorted(set(state) - set(target))
    if missing or unknown:
        raise InvalidInputError(f"checkpointed {what} does not match this build: missing {missing}, unknown {unknown}",
                                field="checkpoint")
    for name, value in state.items():
        if value.shape != target[name].shape or value.dtype != target[name].dtype:
            raise InvalidInputError(f"checkpointed {what} tensor {name!r} has shape {tuple(value.shape)} "
                                    f"{value.dtype}, expected {tuple(target[name].shape)} {target[name].dtype}",
                                    field="checkpoint")
        target[name] = value.clone()
