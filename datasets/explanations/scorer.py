"""Scoring an explanation by simulation, with baselines next to it.

A *simulator* predicts, from an explanation's text alone, the node's activation (0-10) on every token
of some windows. :class:`OfflineSimulator` runs the offline explanations' language
(:mod:`.hypothesis`); the LLM simulator (:mod:`.llm`) asks a chat model. :func:`score_text` scores one
text on a node's held-out windows (top, quantile and random samples); :func:`detection_score` says
how well the simulation tells held-out top windows from random ones (balanced accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from mechscope.datasets.node_dataset.records import ExampleWindow

from .examples import Vocabulary, Windows
from .hypothesis import parse, simulate
from .scoring import SimulationScore, balanced_accuracy, score_simulation

DETECTION_THRESHOLD = 5.0


class Simulator(Protocol):
    name: str

    def simulate(self, text: str, windows: Sequence[ExampleWindow]) -> list[np.ndarray]:
        """Predicted activations (0-10) per token of each window."""
        ...


class OfflineSimulator:
    name = "offline-simulator"

    def simulate(self, text: str, windows: Sequence[ExampleWindow]) -> list[np.ndarray]:
        w = Windows(windows, Vocabulary())
        pred = simulate(parse(text), w)
        return [pred[w.offsets[i]:w.offsets[i + 1]] for i in range(len(windows))]


def score_text(simulator: Simulator, text: str, windows: Sequence[ExampleWindow]
               ) -> tuple[SimulationScore, list[np.ndarray]]:
    predicted = simulator.simulate(text, windows)
    return score_simulation([w.activations for w in windows], predicted), predicted


def detection_score(predicted: Sequence[np.ndarray], sources: Sequence[str]) -> float | None:
    """Balanced accuracy of 'some token simulates >= 5' as a detector of top windows vs random ones."""
    labels, guesses = [], []
    for p, source in zip(predicted, sources):
        if source in ("top", "random"):
            labels.append(source == "top")
            guesses.append(bool(len(p)) and float(np.max(p)) >= DETECTION_THRESHOLD)
    return balanced_accuracy(labels, guesses)
