"""Token categories the offline explainer can name ("fires on names", "fires after numbers").

Word lists come from the task suite's vocabulary (person names, countries and states, capitals,
languages, continents, places, objects, animals, times, historical events) — plain English word
classes, not tied to one model — plus shape classes (numbers, punctuation, capitalised words).
A token is in a word class when its text without the leading space is one of the words.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np


@functools.lru_cache(maxsize=1)
def _word_classes() -> dict[str, frozenset[str]]:
    from mechscope.datasets import task_suite_data as d

    def words(*groups) -> frozenset[str]:  # type: ignore[no-untyped-def]
        out: set[str] = set()
        for g in groups:
            for item in g:
                if isinstance(item, str):
                    out.update(item.split())
        return frozenset(out)

    names = words(getattr(d, "TRAIN_NAMES", ()), getattr(d, "HELDOUT_NAMES", ()))
    countries = words([c[0] for c in d.COUNTRIES], [s[0] for s in d.US_STATES])
    capitals = words([c[1] for c in d.COUNTRIES if c[1]], [s[1] for s in d.US_STATES])
    return {
        "names": names,
        "countries or states": countries,
        "capital cities": capitals,
        "languages": words([c[2] for c in d.COUNTRIES if c[2]]),
        "continents": words([c[3] for c in d.COUNTRIES if c[3]]),
        "places": words(getattr(d, "TRAIN_PLACES", ()), getattr(d, "HELDOUT_PLACES", ())),
        "objects": words(getattr(d, "TRAIN_OBJECTS", ()), getattr(d, "HELDOUT_OBJECTS", ())),
        "animals": words(getattr(d, "ANIMALS", ())),
        "times of day or seasons": words(getattr(d, "TIMES", ())),
        "historical events": words(getattr(d, "TRAIN_EVENTS", ()), getattr(d, "HELDOUT_EVENTS", ())),
    }


_SHAPES: dict[str, Callable[[str], bool]] = {
    "numbers": lambda t: bool(re.fullmatch(r"\s?\d+", t)),
    "punctuation": lambda t: bool(re.fullmatch(r"\s?[^\w\s]+", t)),
    "capitalised words": lambda t: bool(re.fullmatch(r" [A-Z][a-z]+", t)),
}


def category_names() -> list[str]:
    return list(_word_classes()) + list(_SHAPES)


def in_category(token: str, category: str) -> bool:
    shape = _SHAPES.get(category)
    if shape is not None:
        return shape(token)
    words = _word_classes().get(category)
    return words is not None and token.startswith(" ") and token[1:] in words


def membership(strings: list[str], category: str) -> np.ndarray:
    """Boolean per string of a local vocabulary."""
    return np.fromiter((in_category(s, category) for s in strings), dtype=bool, count=len(strings))
