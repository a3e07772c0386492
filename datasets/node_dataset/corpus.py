"""Token corpora a node-dataset build streams through a model: fixed-length rows read by index, so a
resumed build re-reads exactly the batches it has not seen yet."""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import torch

from mechscope.inference.errors import InvalidInputError


@runtime_checkable
class Corpus(Protocol):
    """Rows of ``n_ctx`` token ids, addressed by row index (every row is full: no padding)."""

    n_ctx: int
    num_rows: int

    def rows(self, start: int, count: int) -> torch.Tensor:
        """Rows ``start .. start + count - 1`` as a LongTensor ``[count, n_ctx]``."""

    def describe(self) -> dict:
        """JSON-able description recorded in the manifest (and part of the build fingerprint)."""


class TensorCorpus:
    """A corpus held in memory: a LongTensor ``[rows, n_ctx]``."""

    def __init__(self, tokens: torch.Tensor, name: str = "tensor"):
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise InvalidInputError(f"corpus tokens must be a LongTensor [rows, n_ctx], got {shape}", field="corpus")
        if tokens.shape[0] == 0:
            raise InvalidInputError("the corpus has no rows", field="corpus")
        self.tokens = tokens
        self.name = name
        self.n_ctx = int(tokens.shape[1])
        self.num_rows = int(tokens.shape[0])

    def rows(self, start: int, count: int) -> torch.Tensor:
        return self.tokens[start:start + count]

    def describe(self) -> dict:
        digest = hashlib.sha256(self.tokens.contiguous().numpy().tobytes()).hexdigest()
        return {"kind": "tensor", "name": self.name, "rows": self.num_rows, "n_ctx": self.n_ctx, "sha256": digest}


class TaskSuiteCorpus:
    """Training rows of :class:`~mechscope.datasets.task_suite.TaskSuite` (generated on demand)."""

    def __init__(self, seed: int = 0, num_rows: int = 3000, first_row: int = 0, n_ctx: int = 128):
        from ..task_suite import TaskSuite
        if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
            raise InvalidInputError(f"num_rows must be a positive integer, got {num_rows!r}", field="num_rows")
        self.suite = TaskSuite(seed, n_ctx=n_ctx)
        self.seed, self.first_row, self.num_rows, self.n_ctx = seed, first_row, num_rows, n_ctx

    def rows(self, start: int, count: int) -> torch.Tensor:
        return self.suite.training_rows(count, self.first_row + start)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # pickled (e.g. sent to Ray workers) as its arguments, not its ~1.7 MB tokenizer
        return (TaskSuiteCorpus, (self.seed, self.num_rows, self.first_row, self.n_ctx))

    def describe(self) -> dict:
        return {"kind": "task_suite", "seed": self.seed, "first_row": self.first_row, "rows": self.num_rows,
                "n_ctx": self.n_ctx}


def as_corpus(corpus) -> Corpus:  # type: ignore[no-untyped-def]
    if isinstance(corpus, torch.Tensor):
        return TensorCorpus(corpus)
    if isinstance(corpus, Corpus):
        return corpus
    raise InvalidInputError(f"corpus must be a Corpus (TaskSuiteCorpus, TensorCorpus) or a LongTensor, "
                            f"got {type(corpus).__name__}", field="corpus")
