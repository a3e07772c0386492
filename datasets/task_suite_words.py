"""Which of the task suite's words GPT-2's tokenizer makes usable: single-token names, years that
split as " CC" + "YY", the induction pool's word tokens, and facts whose answer's first token
identifies it. Checked or computed once when a :class:`~.task_suite.TaskSuite` is built."""

from __future__ import annotations

from mechscope.inference.tokenizer import Tokenizer

from . import task_suite_data as data
from .task_suite_examples import INDUCTION_POOL_PATTERN, Fact, TaskSuiteDataError


def check_names_are_single_tokens(tok: Tokenizer) -> None:
    for name in data.TRAIN_NAMES + data.HELDOUT_NAMES:
        ids = tok.encode(" " + name)
        if len(ids) != 1:
            raise TaskSuiteDataError(f"name {name!r} is {len(ids)} GPT-2 tokens with its leading space; "
                                     "IOI names must be exactly one", field="names")
    overlap = set(data.TRAIN_NAMES) & set(data.HELDOUT_NAMES)
    if overlap:
        raise TaskSuiteDataError(f"names in both splits: {sorted(overlap)}", field="names")

def usable_year_suffixes(tok: Tokenizer) -> dict[int, tuple[int, ...]]:
    """Per century CC of the suite, the YY in 00..99 whose year the greater-than task can use.

    A century is *split* when " CC" is one token and at least 20 years tokenize as [" CC", "YY"]
    (then only those YY are kept); otherwise it is *whole* when at least 20 years " CCYY" are one
    token each (the 1900s), and those are kept. :func:`year_answer_tokens` says which.
    """
    two_digit = {yy: tok.encode(f"{yy:02d}") for yy in range(100)}
    usable: dict[int, tuple[int, ...]] = {}
    for century in data.CENTURIES:
        prefix = tok.encode(f" {century}")
        years = {yy: tok.encode(f" {century}{yy:02d}") for yy in range(100)}
        split = tuple(yy for yy in range(100) if len(prefix) == 1 and len(two_digit[yy]) == 1
                      and years[yy] == [*prefix, *two_digit[yy]])
        whole = tuple(yy for yy in range(100) if len(years[yy]) == 1)
        chosen = split if len(split) >= 20 else whole
        if len(chosen) < 20:
            raise TaskSuiteDataError(f"century {century}: only {len(chosen)} years tokenize regularly",
                                     field="centuries")
        usable[century] = chosen
    return usable


def year_answer_tokens(tok: Tokenizer, century: int, suffixes: tuple[int, ...]) -> tuple[bool, tuple[int, ...]]:
    """(whole, answer token per YY of ``suffixes``): the whole-year token " CCYY" when the century's
    years are single tokens (the 1900s), else the two-digit token "YY" that follows " CC"."""
    whole = len(tok.encode(f" {century}{suffixes[0]:02d}")) == 1
    text = (lambda yy: f" {century}{yy:02d}") if whole else (lambda yy: f"{yy:02d}")
    return whole, tuple(tok.encode(text(yy))[0] for yy in suffixes)

def induction_pool(tok: Tokenizer, size: int) -> tuple[int, ...]:
    """The ``size`` most frequent (lowest-id) lowercase word tokens " xxx", plus every name token."""
    pool: list[int] = []
    for token_id in range(tok.vocab_size):
        text = tok.token_str(token_id)
        if INDUCTION_POOL_PATTERN.fullmatch(text) and tok.encode(text) == [token_id]:
            pool.append(token_id)
            if len(pool) == size:
                break
    names = {tok.encode(" " + n)[0] for n in data.TRAIN_NAMES + data.HELDOUT_NAMES}
    return tuple(sorted(set(pool) | names))


def usable_facts(tokenizer: Tokenizer) -> tuple[Fact, ...]:
    """Facts from the tables whose answer's first token identifies the answer within its relation.

    Dropped: answers whose first token is shorter than 3 characters (" R" for Riga says little),
    answers whose first token also occurs in the subject (copyable: "Oklahoma" -> "Oklahoma City"),
    and, among answers of one relation sharing a first token, all but the first in table order.
    """
    raw: list[Fact] = []
    for country, capital, language, continent in data.COUNTRIES:
        for relation, answer in (("capital", capital), ("language", language), ("continent", continent)):
            if answer is not None:
                raw.append(Fact(relation, country, answer))
    raw.extend(Fact("capital", state, capital) for state, capital in data.US_STATES)
    kept: list[Fact] = []
    first_token_owner: dict[tuple[str, int], str] = {}
    for fact in raw:
        answer_ids = tokenizer.encode(" " + fact.answer)
        first = answer_ids[0]
        if len(tokenizer.token_str(first).strip()) < 3:
            continue
        if first in tokenizer.encode(" " + fact.subject) or first in tokenizer.encode(fact.subject):
            continue
        owner = first_token_owner.setdefault((fact.relation, first), fact.answer)
        if owner != fact.answer:
            continue
        kept.append(fact)
    return tuple(kept)
