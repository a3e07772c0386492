"""Offline explanations from a node's train examples alone: no model, no network.

Candidates of every feature family are scored on the train windows with the offline simulator
(:mod:`.hypothesis`), the best becomes the explanation's first clause, and up to two clauses of
other families are added while each raises the train correlation by at least ``MIN_GAIN``:

* tokens: the tokens with the highest (shrunk) mean activation — "fires on ` 17`, ` 18`";
* previous tokens: "fires after ` year`" (n-gram context, alone or refining a token set);
* context: tokens whose presence earlier in the window lifts the activation ("in context with");
  for heads, worded as what the head attends to;
* repeated tokens (induction-like), absolute positions;
* for heads, where the strongest key of each top example sits (previous token, itself, the first
  token, after an earlier copy of the query token);
* output side: the tokens the node's write vector promotes / suppresses through the unembedding
  (from the dataset; described, not simulated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mechscope.datasets.node_dataset.records import ATTN_HEAD, ExampleWindow, NodePageData

from .examples import ExampleSplit, Vocabulary, Windows
from .hypothesis import MAX_LISTED, Clause, Hypothesis, render, simulate
from .scoring import correlation_score

MIN_GAIN = 0.02
TOKEN_PENALTY = 0.002
SHRINK = 2.0
OUTPUT_TOKENS = 3


@dataclass
class ExplainerOutput:
    text: str
    method: str
    details: dict = field(default_factory=dict)


def _rank_by_mean(ids: np.ndarray, act: np.ndarray, n: int) -> np.ndarray:
    """Ids ordered by mean activation (shrunk towards the overall mean), only those above it."""
    valid = ids >= 0
    ids, act = ids[valid], act[valid]
    if not len(ids):
        return np.zeros(0, np.int64)
    overall = float(act.mean())
    sums = np.bincount(ids, weights=act, minlength=n)
    counts = np.bincount(ids, minlength=n)
    mean = (sums + SHRINK * overall) / (counts + SHRINK)
    order = np.argsort(-mean, kind="stable")
    keep = order[(counts[order] > 0) & (mean[order] > overall)]
    return keep[:MAX_LISTED]


def _context_candidates(w: Windows, n: int) -> np.ndarray:
    """Tokens most over-represented at or before the strongest token of high-activation windows."""
    if not len(w):
        return np.zeros(0, np.int64)
    peak = np.array([int(w.offsets[i]) + int(np.argmax(w.act[w.offsets[i]:w.offsets[i + 1]]))
                     for i in range(len(w.windows))])
    strong = w.act[peak] >= np.quantile(w.act[peak], 0.5)
    before = np.zeros(n)
    everywhere = np.zeros(n)
    for i in range(len(w.windows)):
        lo = int(w.offsets[i])
        present = np.unique(w.tok[lo:peak[i] + 1])
        everywhere[present] += 1
        if strong[i]:
            before[present] += 1
    lift = (before + 0.5) / (everywhere + 1.0)
    order = np.argsort(-lift * (before >= 2), kind="stable")
    return order[: 3][before[order[:3]] >= 2]


class _Evaluator:
    def __init__(self, w: Windows):
        self.w = w

    def score(self, clauses: list[Clause]) -> float:
        listed = sum(len(c.tokens) for c in clauses)
        return correlation_score(self.w.act, simulate(Hypothesis(clauses), self.w)) - TOKEN_PENALTY * listed


def _families(w: Windows, head: bool) -> dict[str, list[Clause]]:
    strings = w.vocab.strings
    n = len(strings)
    tokens = _rank_by_mean(w.tok, w.act, n)
    prev = _rank_by_mean(w.prev, w.act, n)
    context = _context_candidates(w, n)
    fam: dict[str, list[Clause]] = {
        "tokens": [Clause("tokens", [strings[i] for i in tokens[:k]]) for k in range(1, len(tokens) + 1)],
        "after": [Clause("after", [strings[i] for i in prev[:k]]) for k in range(1, len(prev) + 1)],
        "context": [Clause("context", [strings[i] for i in context[:k]]) for k in range(1, len(context) + 1)],
        "repeat": [Clause("repeat")],
    }
    from .categories import category_names
    cats = [c for c in category_names() if w.category(c)[w.tok].any()]
    fam["category"] = [Clause("category", relation=c) for c in cats]
    fam["after_category"] = [Clause("after_category", relation=c) for c in cats]
    if w.positions_known:
        fam["positions"] = ([Clause("positions", lo=0, hi=b) for b in (0, 1, 2, 3, 5, 8, 16)]
                            + [Clause("positions", lo=a) for a in (8, 16, 32, 64)])
    return fam


_TOKEN_FAMILIES = ("tokens", "after", "context")


def _options(fam: dict[str, list[Clause]]) -> dict[tuple, Clause]:
    """Candidates keyed so that the same choice made on two folds has the same key: token lists by
    family and length (their tokens differ per fold), other clauses by what they say."""
    out: dict[tuple, Clause] = {}
    for name, options in fam.items():
        for j, c in enumerate(options):
            out[(name, j) if name in _TOKEN_FAMILIES else (name, c.kind, c.relation, c.lo, c.hi)] = c
    return out


class _CrossValidated:
    """Scores a choice of clause by 2-fold cross-validation over the train windows: the clause is
    built from one half and scored on the other (token lists picked from one half must predict the
    other), so long lists of one-off tokens lose to general clauses that carry over."""

    def __init__(self, w: Windows, head: bool):
        self.full = _options(_families(w, head))
        halves = [Windows([x for i, x in enumerate(w.windows) if i % 2 == p], w.vocab) for p in (0, 1)]
        self.split = len(w.windows) >= 4 and all(len(h) for h in halves)
        if self.split:
            self.evals = [_Evaluator(h) for h in halves]
            self.fold_options = [_options(_families(h, head)) for h in halves]
        else:
            self.evals, self.fold_options = [_Evaluator(w)], [self.full]

    def score(self, base: list[Clause], key: tuple) -> float | None:
        if not self.split:
            c = self.full.get(key)
            return None if c is None else self.evals[0].score(base + [c])
        if key[0] not in _TOKEN_FAMILIES:  # the same clause whatever the fold: score it on both halves
            c = self.full.get(key)
            return None if c is None else float(np.mean([ev.score(base + [c]) for ev in self.evals]))
        if not all(key in opts for opts in self.fold_options):
            return None
        return float(np.mean([self.evals[1 - f].score(base + [self.fold_options[f][key]]) for f in (0, 1)]))

    def clause(self, key: tuple) -> Clause | None:
        found = self.full.get(key)
        if found is None and key[0] in _TOKEN_FAMILIES:  # a longer list than the whole train offers
            lists = [c for k, c in self.full.items() if k[0] == key[0]]
            found = lists[-1] if lists else None
        return found

    def best(self, base: list[Clause], exclude: set[str]) -> tuple[float, tuple | None]:
        keys = {k for opts in self.fold_options for k in opts} | set(self.full)
        best, found = -np.inf, None
        for key in sorted(keys, key=str):
            if key[0] in exclude:
                continue
            s = self.score(base, key)
            if s is not None and s > best:
                best, found = s, key
        return best, found


def _greedy(w: Windows, head: bool) -> tuple[list[Clause], float]:
    cv = _CrossValidated(w, head)
    score, key = cv.best([], set())
    first = cv.clause(key) if key is not None else None
    if first is None:
        return [], 0.0
    chosen, used = [first], {key[0]}
    for _ in range(2):
        s, key = cv.best(chosen, used)
        if key is None or s < score + MIN_GAIN or (c := cv.clause(key)) is None:
            break
        chosen.append(c)
        used.add(key[0])
        score = s
    return chosen, score


def head_key_relation(windows: list[ExampleWindow]) -> tuple[str | None, float]:
    """Where a head's strongest key sits in its top examples: the most common of 'previous', 'self',
    'first', 'repeat' (the token after an earlier copy of the query token), and its share."""
    counts = {"previous": 0, "self": 0, "first": 0, "repeat": 0}
    total = 0
    for w in windows:
        pairs = w.token_pair_activations
        if not pairs or not w.activations:
            continue
        q = int(np.argmax(w.activations))
        row = pairs[q * (q + 1) // 2: q * (q + 1) // 2 + q + 1]
        if len(row) != q + 1:
            continue
        k = int(np.argmax(row))
        total += 1
        if k >= 1 and k < q and w.tokens[k - 1] == w.tokens[q]:
            counts["repeat"] += 1
        elif k == q - 1:
            counts["previous"] += 1
        elif k == q:
            counts["self"] += 1
        elif k == 0:
            counts["first"] += 1
    if not total:
        return None, 0.0
    name = max(counts, key=counts.__getitem__)
    return name, counts[name] / total


def output_clauses(page: NodePageData) -> list[Clause]:
    out = []
    if page.promoted_tokens:
        out.append(Clause("promotes", [t.token for t in page.promoted_tokens[:OUTPUT_TOKENS]]))
    if page.suppressed_tokens:
        out.append(Clause("suppresses", [t.token for t in page.suppressed_tokens[:OUTPUT_TOKENS]]))
    return out


class OfflineExplainer:
    """Explains a node from its dataset page (see the module docs). Deterministic."""

    name = "offline"

    def explain(self, page: NodePageData, split: ExampleSplit) -> ExplainerOutput:
        head = page.kind == ATTN_HEAD
        w = Windows(split.train, Vocabulary())
        details: dict = {}
        if not len(w) or float(w.act.max(initial=0.0)) <= 0.0:
            clauses: list[Clause] = []
            details["inactive"] = True
        else:
            clauses, train_score = _greedy(w, head)
            details["train_cv_score"] = round(float(train_score), 4)
        if head:
            relation, share = head_key_relation(split.train[: (len(page.top_examples) + 1) // 2])
            details["key_relation"], details["key_relation_share"] = relation, round(share, 3)
            has_key_clause = any(c.kind in ("context", "repeat") for c in clauses)
            if relation in ("previous", "self", "first") and share >= 0.4 and not has_key_clause:
                clauses.append(Clause("relation", relation=relation))
        h = Hypothesis(clauses + output_clauses(page))
        method = "offline/inactive" if details.get("inactive") else h.method()
        return ExplainerOutput(render(h, head=head), method, details)
