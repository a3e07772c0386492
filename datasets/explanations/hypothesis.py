"""The offline explanations' small language: rendered as readable text, parsed back from text, and
simulated on token windows (so any text in it — a random other node's, or an empty one — can be
scored by the same simulator).

Clauses, separated by '; ' (token strings are JSON-quoted, so they may hold any character)::

    fires on " 17", " 18"            the token is one of these (earlier ones fire more)
    attends from " to", " gave"      the same, worded for an attention head's query token
    fires on " 17" after " in"       ... and the previous token is one of these
    fires after " year", " in"       the previous token is one of these
    in context with " capital"       one of these occurs at or before the token (in the window)
    attends to " Mary", " John"      (heads) the same, worded as what the head attends to
    attends to the token after an earlier copy of itself | an earlier copy of itself
                                     the token occurred earlier (induction / duplicate-token heads)
    on repeated tokens               the same, for any node
    attends to the previous token | the first token | itself      (described, not predictive)
    at positions 0-3 | at positions 40+    absolute position in the row
    promotes " Paris", " Rome"; suppresses " the"    what the write vector says (not simulated)

Simulation: each clause gives a factor in [0, 1] per token. The first predictive clause is hard
(0 where it does not hold), later ones are soft (``SOFT`` where they do not hold); the prediction is
the product, scaled to 0-10 as OpenAI's simulator's. A text with no predictive clause predicts a
constant (and so scores 0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from .examples import Windows

SOFT = 0.25
MAX_LISTED = 8

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_POSITIONS = re.compile(r"^at positions? (\d+)\s*(?:-|–|to)\s*(\d+)$|^at positions? (\d+)\+$")
RELATIONS = {
    "the token after an earlier copy of itself": "repeat",
    "an earlier copy of itself": "repeat",
    "the previous token": "previous",
    "the first token": "first",
    "itself": "self",
}


@dataclass
class Clause:
    kind: str
    """tokens | after | category | after_category | context | repeat | relation | positions | promotes |
    suppresses"""
    tokens: list[str] = field(default_factory=list)
    relation: str | None = None
    lo: int = 0
    hi: int | None = None
    wording: str = ""


@dataclass
class Hypothesis:
    clauses: list[Clause] = field(default_factory=list)

    @property
    def predictive(self) -> list[Clause]:
        return [c for c in self.clauses if c.kind not in ("promotes", "suppresses")
                and not (c.kind == "relation" and c.relation in ("previous", "first", "self"))]

    def method(self) -> str:
        kinds = [c.kind for c in self.clauses if c.kind not in ("promotes", "suppresses")]
        if any(c.kind in ("promotes", "suppresses") for c in self.clauses):
            kinds.append("output")
        return "offline/" + ("+".join(dict.fromkeys(kinds)) or "none")


def quote(tokens: list[str]) -> str:
    return ", ".join(json.dumps(t, ensure_ascii=False) for t in tokens)


def render(h: Hypothesis, *, head: bool = False) -> str:
    """The text of a hypothesis (parse(render(h)) simulates exactly as h)."""
    parts: list[str] = []
    i = 0
    clauses = h.clauses
    while i < len(clauses):
        c = clauses[i]
        nxt = clauses[i + 1] if i + 1 < len(clauses) else None
        if c.kind == "tokens":
            text = f"{'attends from' if head else 'fires on'} {quote(c.tokens)}"
            if nxt is not None and nxt.kind == "after" and i == 0:
                text += f" after {quote(nxt.tokens)}"
                i += 1
            parts.append(text)
        elif c.kind == "after":
            parts.append(f"fires after {quote(c.tokens)}")
        elif c.kind == "category":
            parts.append(f"{'attends from' if head else 'fires on'} {c.relation}")
        elif c.kind == "after_category":
            parts.append(f"fires after {c.relation}")
        elif c.kind == "context":
            parts.append(f"{'attends to' if head else 'in context with'} {quote(c.tokens)}")
        elif c.kind == "repeat":
            parts.append("attends to the token after an earlier copy of itself" if head else "on repeated tokens")
        elif c.kind == "relation":
            name = {v: k for k, v in reversed(list(RELATIONS.items()))}[c.relation or ""]
            parts.append(f"attends to {name}")
        elif c.kind == "positions":
            parts.append(f"at positions {c.lo}+" if c.hi is None else f"at positions {c.lo}-{c.hi}")
        elif c.kind in ("promotes", "suppresses"):
            parts.append(f"{c.kind} {quote(c.tokens)}")
        i += 1
    return "; ".join(parts)


def parse(text: str) -> Hypothesis:
    """The clauses of ``text`` that the language knows (anything else is ignored)."""
    quoted: list[str] = []

    def stash(m: re.Match) -> str:
        try:
            quoted.append(json.loads(m.group(0)))
        except json.JSONDecodeError:
            quoted.append(m.group(0)[1:-1])
        return f"\x00{len(quoted) - 1}\x00"

    body = _QUOTED.sub(stash, text or "")

    def tokens_of(s: str) -> list[str]:
        return [quoted[int(n)] for n in re.findall(r"\x00(\d+)\x00", s)]

    h = Hypothesis()
    for raw in body.split(";"):
        part = raw.strip().rstrip(".").strip()
        low = part.lower()
        if low.startswith(("fires on ", "attends from ", "fires after ")) and low.split(" ", 2)[2] in _categories():
            kind = "after_category" if low.startswith("fires after ") else "category"
            h.clauses.append(Clause(kind, relation=low.split(" ", 2)[2]))
        elif low.startswith(("fires on ", "attends from ")):
            head, _, after = part.partition(" after ")
            h.clauses.append(Clause("tokens", tokens_of(head)))
            if after:
                h.clauses.append(Clause("after", tokens_of(after)))
        elif low.startswith("fires after "):
            h.clauses.append(Clause("after", tokens_of(part)))
        elif low.startswith(("in context with ", "attends to ")):
            rest = low.split(" ", 2)[2] if low.startswith("attends") else ""
            if rest in RELATIONS:
                relation = RELATIONS[rest]
                h.clauses.append(Clause("repeat") if relation == "repeat" else Clause("relation", relation=relation))
            else:
                h.clauses.append(Clause("context", tokens_of(part)))
        elif low == "on repeated tokens":
            h.clauses.append(Clause("repeat"))
        elif (m := _POSITIONS.match(low)) is not None:
            lo = int(m.group(1) or m.group(3))
            h.clauses.append(Clause("positions", lo=lo, hi=int(m.group(2)) if m.group(2) else None))
        elif low.startswith(("promotes ", "suppresses ")):
            h.clauses.append(Clause(low.split(" ", 1)[0], tokens_of(part)))
    h.clauses = [c for c in h.clauses if c.tokens or c.kind not in ("tokens", "after", "context", "promotes",
                                                                       "suppresses")]
    return h


def _categories() -> set[str]:
    from .categories import category_names
    return set(category_names())


def _ranked(ids_of: dict[str, int], tokens: list[str], n: int) -> np.ndarray:
    """Per local token id: weight 1 for the first listed token down to 0.5 for the last, 0 unlisted."""
    weights = np.zeros(n, dtype=np.float64)
    listed = tokens[:MAX_LISTED]
    for r, t in enumerate(listed):
        i = ids_of.get(t)
        if i is not None and weights[i] == 0:
            weights[i] = 1.0 - 0.5 * r / max(len(listed) - 1, 1)
    return weights


def clause_factor(c: Clause, w: Windows) -> np.ndarray | None:
    """Per token of ``w``: how much the clause holds (0..1); None for clauses that predict nothing."""
    n_vocab = len(w.vocab.strings)
    if c.kind == "tokens":
        return _ranked(w.vocab.ids, c.tokens, n_vocab)[w.tok] if len(w) else np.zeros(0)
    if c.kind == "after":
        weights = np.append(_ranked(w.vocab.ids, c.tokens, n_vocab), 0.0)  # prev = -1 -> last entry, 0
        return weights[w.prev]
    if c.kind in ("category", "after_category"):
        member = w.category(c.relation or "").astype(np.float64)
        return member[w.tok] if c.kind == "category" else np.append(member, 0.0)[w.prev]
    if c.kind == "context":
        member = np.isin(w.tok, w.vocab.lookup(c.tokens))
        return w.seen_before(member).astype(np.float64)
    if c.kind == "repeat":
        return w.repeat.astype(np.float64)
    if c.kind == "positions":
        hi = np.inf if c.hi is None else c.hi
        return ((w.pos >= c.lo) & (w.pos <= hi)).astype(np.float64)
    return None


def simulate(h: Hypothesis, w: Windows) -> np.ndarray:
    """Predicted activation (0-10) of every token of ``w``."""
    pred = np.ones(len(w), dtype=np.float64)
    hard = True
    for c in h.predictive:
        f = clause_factor(c, w)
        if f is None:
            continue
        pred *= f if hard else SOFT + (1 - SOFT) * f
        hard = False
    return 10.0 * pred
