"""Finding nodes by what their explanations say ("nodes about years").

:class:`ExplanationIndex` holds every explanation of a dataset in memory (a few MB for tens of
thousands of nodes) and answers: all explanations of a node, the best one, and a text search. A
query word matches an explanation when the word (or its singular) occurs in the text, in a quoted
token, or names one of the offline explainer's categories (``years`` -> numbers, ``cities`` ->
capital cities, ``people`` -> names ...). Results rank by matched words, then by score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .records import Explanation, NodeKey

SYNONYMS = {
    "year": "numbers", "date": "numbers", "digit": "numbers", "number": "numbers", "century": "numbers",
    "person": "names", "people": "names", "name": "names", "city": "capital", "capital": "capital",
    "country": "countries", "state": "states", "nation": "countries", "language": "languages",
    "time": "times", "season": "seasons", "event": "events", "history": "historical", "induction": "repeated",
    "copy": "earlier copy", "previous": "previous", "position": "positions", "place": "places",
}


def _terms(query: str) -> list[str]:
    words = re.findall(r"[\w']+", query.lower())
    stop = {"nodes", "node", "about", "the", "a", "an", "of", "that", "fire", "fires", "on", "for", "and", "with"}
    return [w for w in words if w not in stop] or words


def _variants(term: str) -> list[str]:
    out = {term}
    if term.endswith("ies"):
        out.add(term[:-3] + "y")
    elif term.endswith("s") and len(term) > 3:
        out.add(term[:-1])
    for t in list(out):
        if t in SYNONYMS:
            out.add(SYNONYMS[t])
    return sorted(out)


@dataclass(frozen=True)
class SearchHit:
    node: NodeKey
    explanation: Explanation
    matched: int


class ExplanationIndex:
    def __init__(self, entries: Iterable[tuple[NodeKey, Explanation]]):
        self.by_node: dict[NodeKey, list[Explanation]] = {}
        for node, e in entries:
            self.by_node.setdefault(node, []).append(e)
        self._lower = {node: [e.text.lower() for e in es] for node, es in self.by_node.items()}

    def __len__(self) -> int:
        return len(self.by_node)

    def for_node(self, node: NodeKey) -> list[Explanation]:
        return list(self.by_node.get(node, []))

    def best(self, node: NodeKey) -> Explanation | None:
        """The highest-scored explanation of ``node`` (an LLM one wins ties), or None."""
        found = self.by_node.get(node)
        if not found:
            return None
        return max(found, key=lambda e: (e.score if e.score is not None else -2.0, e.explainer == "llm"))

    def search(self, query: str, *, limit: int = 20, kind: str | None = None) -> list[SearchHit]:
        terms = [_variants(t) for t in _terms(query)]
        if not terms:
            return []
        hits = []
        for node, texts in self._lower.items():
            if kind is not None and node.kind != kind:
                continue
            best: tuple[int, float, int] | None = None
            for i, text in enumerate(texts):
                matched = sum(any(v in text for v in variants) for variants in terms)
                if matched:
                    score = self.by_node[node][i].score
                    candidate = (matched, score if score is not None else -2.0, i)
                    if best is None or candidate > best:
                        best = candidate
            if best is not None:
                hits.append(SearchHit(node, self.by_node[node][best[2]], best[0]))
        hits.sort(key=lambda h: (-h.matched, -(h.explanation.score if h.explanation.score is not None else -2.0),
                                 str(h.node)))
        return hits[:limit]
