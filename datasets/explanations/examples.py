"""The examples an explainer learns from and a scorer scores on, as flat per-token arrays.

A node page's windows are split in two, alternately inside each source so both halves see the
whole range of activations: *train* (what explainers look at) and *held out* (what scorers score
on): top examples, quantile samples and random samples, as in Bills et al. (2023).

:class:`Windows` concatenates windows into flat arrays (one entry per token) with what the offline
simulator needs: token and previous-token ids (ids of a local vocabulary of token strings), the
absolute position when known, and per-window offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mechscope.datasets.node_dataset.records import ExampleWindow, NodePageData


@dataclass(frozen=True)
class ExampleSplit:
    train: list[ExampleWindow]
    held_out: list[ExampleWindow]
    held_out_sources: list[str]
    """'top', 'quantile' or 'random' for each held-out window."""


def split_examples(page: NodePageData) -> ExampleSplit:
    """Even-numbered windows of each source train, odd-numbered ones are held out."""
    train: list[ExampleWindow] = []
    held: list[ExampleWindow] = []
    sources: list[str] = []
    groups = [("top", page.top_examples)]
    groups += [("quantile", q) for q in (page.quantile_samples or [])]
    groups.append(("random", page.random_sample))
    for source, windows in groups:
        for i, w in enumerate(windows):
            if not w.tokens:
                continue
            if i % 2 == 0:
                train.append(w)
            else:
                held.append(w)
                sources.append(source)
    return ExampleSplit(train, held, sources)


class Vocabulary:
    """Token string -> small int id, grown as windows are added (shared by one node's windows)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.strings: list[str] = []

    def id(self, token: str) -> int:
        found = self.ids.get(token)
        if found is None:
            found = self.ids[token] = len(self.strings)
            self.strings.append(token)
        return found

    def lookup(self, tokens: Sequence[str]) -> np.ndarray:
        """Ids of ``tokens`` that are known (unknown strings are dropped: they occur nowhere)."""
        return np.array([self.ids[t] for t in tokens if t in self.ids], dtype=np.int64)


class Windows:
    """Flat per-token arrays of a list of windows."""

    def __init__(self, windows: Sequence[ExampleWindow], vocab: Vocabulary):
        self.windows = list(windows)
        self.vocab = vocab
        lengths = [len(w.tokens) for w in self.windows]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        n = int(self.offsets[-1])
        self.tok = np.array([vocab.id(t) for w in self.windows for t in w.tokens], dtype=np.int64)
        self.act = np.array([a for w in self.windows for a in w.activations], dtype=np.float64)
        if len(self.act) != n:
            raise ValueError("every window needs one activation per token")
        starts = np.repeat(self.offsets[:-1], lengths)
        self.index_in_window = np.arange(n) - starts
        self.first = self.index_in_window == 0
        self.prev = np.where(self.first, -1, np.roll(self.tok, 1))
        self.window_of = np.repeat(np.arange(len(self.windows)), lengths)
        known = [w.start is not None for w in self.windows]
        self.positions_known = bool(self.windows) and all(known)
        base = np.repeat([w.start or 0 for w in self.windows], lengths) if self.windows else np.zeros(0, np.int64)
        self.pos = base + self.index_in_window
        self._repeat: np.ndarray | None = None
        self._categories: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.tok)

    def seen_before(self, mask: np.ndarray, inclusive: bool = True) -> np.ndarray:
        """Per token: whether ``mask`` holds at some token of its window at or before it (``inclusive``)
        or strictly before it."""
        counts = np.cumsum(mask.astype(np.int64))
        before_window = np.concatenate([[0], counts])[self.offsets[:-1]][self.window_of]
        upto = counts - before_window
        return upto > (0 if inclusive else mask.astype(np.int64))

    def category(self, name: str) -> np.ndarray:
        """Per local token id: whether the token is in the category (see :mod:`.categories`)."""
        found = self._categories.get(name)
        if found is None or len(found) != len(self.vocab.strings):
            from .categories import membership
            found = self._categories[name] = membership(self.vocab.strings, name)
        return found

    @property
    def repeat(self) -> np.ndarray:
        """Per token: the same token occurs earlier in its window (also exactly the tokens where an
        induction head can attend to the token after an earlier copy of the current one)."""
        if self._repeat is None:
            out = np.zeros(len(self.tok), dtype=bool)
            for w in range(len(self.windows)):
                seen: set[int] = set()
                for i in range(int(self.offsets[w]), int(self.offsets[w + 1])):
                    t = int(self.tok[i])
                    out[i] = t in seen
                    seen.add(t)
            self._repeat = out
        return self._repeat
