"""The task suite's vocabulary of examples: the mix of sentence kinds, and the probe examples each
task yields (IOI, induction, facts, greater-than), as plain frozen data."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

from mechscope.inference.errors import InvalidInputError

Split = Literal["train", "heldout"]
SPLITS: tuple[str, ...] = ("train", "heldout")
KINDS: tuple[str, ...] = ("ioi", "fact", "greater_than", "induction", "filler")
INDUCTION_POOL_PATTERN = re.compile(r" [a-z]{3,12}")
TASK_STREAM = "mechscope.task_suite"


class TaskSuiteDataError(InvalidInputError):
    """The word tables violate a tokenization fact the tasks rely on (e.g. a name is two tokens)."""


@dataclass(frozen=True)
class TaskMix:
    """Relative frequency of each sentence kind in training documents (need not sum to 1).

    ``induction`` counts the first occurrence of a span; its repetition is added on top.
    """

    ioi: float = 0.28
    fact: float = 0.20
    greater_than: float = 0.10
    induction: float = 0.25
    filler: float = 0.17

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise InvalidInputError(f"TaskMix.{f.name} must be a finite number >= 0, got {value!r}",
                                        field=f"mix.{f.name}")
        if sum(self.weights()) <= 0:
            raise InvalidInputError(f"TaskMix needs at least one positive weight, got {self}", field="mix")

    def weights(self) -> tuple[float, ...]:
        """Weights in the order of :data:`KINDS`."""
        return tuple(float(getattr(self, kind)) for kind in KINDS)


@dataclass(frozen=True)
class Fact:
    relation: str
    subject: str
    answer: str


class Sentence(NamedTuple):
    """One sentence of a training document. ``template`` is None for induction spans."""

    kind: str  # one of KINDS, or "induction_repeat"
    template: str | None
    values: dict[str, str]
    tokens: list[int]


@dataclass(frozen=True)
class IOIExample:
    """BOS + an IOI sentence cut before its last name. Answer ``io_token``, distractor ``s_token``."""

    tokens: tuple[int, ...]
    io_token: int
    s_token: int
    template_id: int  # index into the split's template list
    template: str
    order: Literal["ABBA", "BABA"]


@dataclass(frozen=True)
class InductionExample:
    """BOS, filler, a random span, filler, the same span again.

    ``control_tokens`` is identical except that the first occurrence is replaced by a different
    random span, so the second occurrence is no longer predictable (same positions, same targets).
    """

    tokens: tuple[int, ...]
    control_tokens: tuple[int, ...]
    first_start: int
    repeat_start: int
    span_length: int


@dataclass(frozen=True)
class FactExample:
    """BOS + a fact frame cut before the answer; ``answer_token`` is the answer's first token."""

    tokens: tuple[int, ...]
    answer_token: int
    relation: str
    subject: str
    answer: str
    frame: str


@dataclass(frozen=True)
class GreaterThanExample:
    """BOS + "The war lasted from the year 1732 to the year 17"; the model should continue "YY" > 32.

    ``year_tokens[i]`` is the id of the answer token for ``year_values[i]`` (all YY the suite uses
    in this century): the two-digit token "YY", or in the 1900s, where GPT-2 writes a year as one
    token and the prompt ends at "the year", the whole year " 19YY". ``valid[i]`` says whether that
    YY is greater than ``start_year``.
    """

    tokens: tuple[int, ...]
    century: int
    start_year: int
    year_values: tuple[int, ...]
    year_tokens: tuple[int, ...]
    valid: tuple[bool, ...]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {SPLITS}, got {split!r}", field="split")


def check_count(n: int, field: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"{field} must be an integer >= 0, got {n!r}", field=field)
