"""Finding nodes by what their explanations say ("nodes about years").

:class:`ExplanationIndex` holds every explanation of a dataset in memory (a few MB for tens of
thousands of nodes) and answers: all explanations of a node, the best one, and a text search. A
query word matches an explanation when the word (or its singular) occurs in the text, in a quoted
token, or names one of the offline explainer's categories (``years`` -> numbers, ``cities`` ->
capital cities, ``people`` -> names ...), as a whole word. Results rank by matched words (a match in
what makes the node fire counts twice one in what it promotes / suppresses), then by score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .records import Explanation, NodeKey

SYNONYMS = {
    "year": ["numbers"], "date": ["numbers"], "digit": ["numbers"], "number": ["numbers"], "century": ["numbers"],
    "person": ["names"], "people": ["names"], "name": ["names"], "city": ["capital cities"], "capital": ["capital cities"],
    "country": ["countries or states"], "state": ["countries or states"], "nation": ["countries or states"],
    "language": ["languages"], "time": ["times of day or seasons"], "season": ["times of day or seasons"],
    "event": ["historical events"], "history": ["historical events"], "induction": ["repeated", "earlier copy"],
    "copy": ["earlier copy", "repeated"], "duplicate": ["repeated", "earlier copy"], "position": ["positions"],
    "place": ["places"], "first": ["positions 0-0", "the first token"],
}
_OUTPUT = re.compile(r"(?:^|; )(?:promotes|suppresses) ")


def _terms(query: str) -> list[str]:
    words = re.findall(r"[\w']+", query.lower())
    stop = {"nodes", "node", "about", "the", "a", "an", "of", "that", "fire", "fires", "on", "for", "and", "with"}
    return [w for w in words if w not in stop] or words


def _patterns(term: str) -> re.Pattern:
    """The term, its singular and its synonyms, as whole words."""
    out = {term}
    if term.endswith("ies") and len(term) > 4:
        out.add(term[:-3] + "y")
    elif term.endswith("s") and len(term) > 3:
        out.add(term[:-1])
    for t in list(out):
        out.update(SYNONYMS.get(t, []))
    alternatives = "|".join(re.escape(v) for v in sorted(out, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _split(text: str) -> tuple[str, str]:
    """(what makes the node fire, what it writes): output clauses match with half the weight."""
    m = _OUTPUT.search(text)
    return (text, "") if m is None else (text[:m.start()], text[m.start():])


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
        self._lower = {node: [_split(e.text.lower()) for e in es] for node, es in self.by_node.items()}

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
        patterns = [_patterns(t) for t in _terms(query)]
        if not patterns:
            return []
        ranked = []
        for node, texts in self._lower.items():
            if kind is not None and node.kind != kind:
                continue
            best: tuple[int, float, int, int] | None = None
            for i, (inputs, outputs) in enumerate(texts):
                weights = [2 if p.search(inputs) else 1 if p.search(outputs) else 0 for p in patterns]
                if any(weights):
                    score = self.by_node[node][i].score
                    candidate = (sum(weights), score if score is not None else -2.0, sum(w > 0 for w in weights), i)
                    if best is None or candidate > best:
                        best = candidate
            if best is not None:
                ranked.append((best, node))
        ranked.sort(key=lambda t: (-t[0][0], -t[0][1], str(t[1])))
        return [SearchHit(node, self.by_node[node][b[3]], b[2]) for b, node in ranked[:limit]]
