"""Summaries of stored explanations: per kind, the mean score beside its baselines, a text
histogram, the best and the worst."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .records import Explanation, NodeKey


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarize(entries: Iterable[tuple[NodeKey, Explanation]]) -> dict[str, dict]:
    """Per node kind: count, mean score, mean random / empty baselines, mean detection."""
    by_kind: dict[str, dict[str, list[float]]] = {}
    for node, e in entries:
        if e.score is None:
            continue
        d = by_kind.setdefault(node.kind, {"score": [], "random": [], "empty": [], "detection": []})
        d["score"].append(e.score)
        for name in ("random", "empty"):
            if e.baselines.get(name) is not None:
                d[name].append(float(e.baselines[name]))  # type: ignore[arg-type]
        if e.detection is not None:
            d["detection"].append(e.detection)
    return {k: {"nodes": len(v["score"]), "mean_score": _mean(v["score"]), "mean_random": _mean(v["random"]),
                "mean_empty": _mean(v["empty"]), "mean_detection": _mean(v["detection"]),
                "median_score": float(np.median(v["score"])) if v["score"] else math.nan}
            for k, v in sorted(by_kind.items())}


def text_histogram(values: list[float], *, lo: float = -0.2, hi: float = 1.0, bins: int = 12, width: int = 50) -> str:
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    peak = max(int(counts.max()), 1) if len(counts) else 1
    lines = []
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        lines.append(f"[{a:+.1f}, {b:+.1f})  {'#' * round(width * int(c) / peak):<{width}} {int(c)}")
    return "\n".join(lines)


def ranked(entries: Iterable[tuple[NodeKey, Explanation]], n: int = 10) -> tuple[list, list]:
    scored = sorted(((e.score, str(k), e.text) for k, e in entries if e.score is not None), key=lambda t: -t[0])
    return scored[:n], scored[-n:][::-1]
