"""Scores of simulated against real activations (Bills et al. 2023) and of detection (delphi).

* ``correlation_score``: Pearson correlation of real and simulated activations over **all tokens of
  all scored sequences concatenated** (not a mean of per-sequence correlations); 0 when either side
  is constant (a simulator that predicts nothing explains nothing).
* ``rsquared_score``: 1 - mean((real - pred)^2) / mean(real^2), and ``absolute_dev_explained_score``:
  1 - mean|real - pred| / mean|real|, with the 0-10 predictions mapped back to activation units
  (times max|real| / 10), as OpenAI's neuron-explainer defines them.
* ``balanced_accuracy``: mean of the true-positive and true-negative rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def correlation_score(real: np.ndarray, predicted: np.ndarray) -> float:
    real, predicted = np.asarray(real, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if real.shape != predicted.shape:
        raise ValueError(f"real {real.shape} and predicted {predicted.shape} differ in shape")
    if len(real) < 2:
        return 0.0
    r, p = real - real.mean(), predicted - predicted.mean()
    denominator = float(np.sqrt((r * r).sum() * (p * p).sum()))
    if denominator <= 1e-12 * max(1.0, float(np.abs(real).max()) * float(np.abs(predicted).max())):
        return 0.0
    return float((r * p).sum() / denominator)


def rsquared_score(real: np.ndarray, predicted_real_units: np.ndarray) -> float | None:
    denominator = float(np.mean(np.square(real)))
    if denominator == 0:
        return None
    return float(1 - np.mean(np.square(real - predicted_real_units)) / denominator)


def absolute_dev_explained_score(real: np.ndarray, predicted_real_units: np.ndarray) -> float | None:
    denominator = float(np.mean(np.abs(real)))
    if denominator == 0:
        return None
    return float(1 - np.mean(np.abs(real - predicted_real_units)) / denominator)


@dataclass(frozen=True)
class SimulationScore:
    ev_correlation_score: float
    rsquared_score: float | None
    absolute_dev_explained_score: float | None


def score_simulation(real: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> SimulationScore:
    """Scores of per-sequence predictions (0-10) against per-sequence real activations."""
    if len(real) != len(predicted) or any(len(a) != len(b) for a, b in zip(real, predicted)):
        raise ValueError("real and predicted need the same sequences of the same lengths")
    flat_real = np.concatenate([np.asarray(s, np.float64) for s in real]) if real else np.zeros(0)
    flat_pred = np.concatenate([np.asarray(s, np.float64) for s in predicted]) if predicted else np.zeros(0)
    scale = float(np.abs(flat_real).max()) / 10.0 if len(flat_real) else 0.0
    in_units = flat_pred * scale
    return SimulationScore(correlation_score(flat_real, flat_pred), rsquared_score(flat_real, in_units),
                           absolute_dev_explained_score(flat_real, in_units))


def balanced_accuracy(labels: Sequence[bool], guesses: Sequence[bool]) -> float | None:
    """Mean of the recall on positives and on negatives; None when one class is missing."""
    labels_a, guesses_a = np.asarray(labels, bool), np.asarray(guesses, bool)
    if labels_a.all() or not labels_a.any():
        return None
    tpr = float((guesses_a & labels_a).sum() / labels_a.sum())
    tnr = float((~guesses_a & ~labels_a).sum() / (~labels_a).sum())
    return (tpr + tnr) / 2
