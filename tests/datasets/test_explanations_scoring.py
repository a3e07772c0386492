"""Scorer math against closed forms, the offline language's round trip, and the offline explainer
on pages whose activations follow a known rule."""

from __future__ import annotations

import numpy as np
import pytest

from mechscope.datasets.explanations import (OfflineExplainer, OfflineSimulator, absolute_dev_explained_score,
                                             balanced_accuracy, correlation_score, parse, render, rsquared_score,
                                             score_simulation, score_text, split_examples)
from mechscope.datasets.explanations.examples import Vocabulary, Windows
from mechscope.datasets.explanations.hypothesis import simulate
from mechscope.datasets.node_dataset.records import ExampleWindow

from .explanation_helpers import synthetic_page


def test_correlation_is_numpy_corrcoef_over_all_tokens_concatenated():
    rng = np.random.default_rng(0)
    real = [rng.normal(size=n) for n in (5, 9, 3)]
    pred = [r * 0.5 + rng.normal(size=len(r)) for r in real]
    score = score_simulation(real, pred)
    expected = np.corrcoef(np.concatenate(real), np.concatenate(pred))[0, 1]
    assert score.ev_correlation_score == pytest.approx(expected, abs=1e-12)
    per_sequence_mean = np.mean([np.corrcoef(r, p)[0, 1] for r, p in zip(real, pred)])
    assert abs(score.ev_correlation_score - per_sequence_mean) > 1e-3  # not a mean of per-sequence scores


def test_rsquared_and_absolute_deviation_closed_forms():
    real = np.array([0.0, 2.0, 4.0, 1.0])
    pred = np.array([0.0, 10.0, 5.0, 0.0])  # 0-10 scale; max|real| = 4 -> units: pred * 0.4
    units = pred * 0.4
    s = score_simulation([real[:2], real[2:]], [pred[:2], pred[2:]])
    assert s.rsquared_score == pytest.approx(1 - np.mean((real - units) ** 2) / np.mean(real ** 2))
    assert s.absolute_dev_explained_score == pytest.approx(1 - np.mean(np.abs(real - units)) / np.mean(np.abs(real)))
    assert rsquared_score(np.zeros(3), np.ones(3)) is None
    assert absolute_dev_explained_score(np.zeros(3), np.ones(3)) is None


def test_constant_prediction_scores_zero_and_bad_shapes_are_errors():
    assert correlation_score(np.array([1.0, 2.0, 3.0]), np.full(3, 7.0)) == 0.0
    assert correlation_score(np.zeros(4), np.arange(4.0)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        correlation_score(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="same sequences"):
        score_simulation([[1.0, 2.0]], [[1.0]])


def test_balanced_accuracy_closed_form():
    labels = [True, True, True, False, False]
    guesses = [True, False, True, False, True]
    assert balanced_accuracy(labels, guesses) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert balanced_accuracy([True, True], [True, False]) is None


def _windows(*token_lists: list[str], starts=None) -> Windows:  # type: ignore[no-untyped-def]
    ws = [ExampleWindow(tokens=t, activations=[0.0] * len(t), max_activation=0.0,
                        start=None if starts is None else starts[i]) for i, t in enumerate(token_lists)]
    return Windows(ws, Vocabulary())


def test_simulator_semantics_hand_checked():
    w = _windows([" year", " 17", " in", " 17", " the", " 18"], [" 17", " Paris", " 17"], starts=[0, 40])
    h = parse('fires on " 17", " 18" after " year"')
    # " 17" listed first (weight 1), " 18" last (0.5); 'after' is soft: 1 if prev is " year" else 0.25
    expected = 10 * np.array([0, 1, 0, 0.25, 0, 0.5 * 0.25, 0.25, 0, 0.25])
    assert simulate(h, w) == pytest.approx(expected)
    assert simulate(parse("on repeated tokens"), w) == pytest.approx(10 * np.array([0, 0, 0, 1, 0, 0, 0, 0, 1]))
    assert simulate(parse("at positions 40+"), w) == pytest.approx(10 * np.array([0] * 6 + [1] * 3))
    assert simulate(parse("fires on numbers"), w) == pytest.approx(10 * np.array([0, 1, 0, 1, 0, 1, 1, 0, 1]))
    assert simulate(parse('in context with " Paris"'), w) == pytest.approx(10 * np.array([0] * 7 + [1, 1]))
    assert np.ptp(simulate(parse(""), w)) == 0  # the empty explanation predicts a constant
    assert np.ptp(simulate(parse('promotes " Paris"'), w)) == 0  # output clauses predict nothing


def test_render_parse_round_trip_with_awkward_tokens():
    text = 'fires on "\\"", "; x", " a\\nb" after "after"; in context with "fires on"; at positions 0-3; ' \
           'promotes " Paris"; suppresses ";"'
    h = parse(text)
    assert [c.kind for c in h.clauses] == ["tokens", "after", "context", "positions", "promotes", "suppresses"]
    assert h.clauses[0].tokens == ['"', "; x", " a\nb"]
    assert h.clauses[1].tokens == ["after"]
    assert render(parse(render(h))) == render(h)


@pytest.mark.parametrize("rule, expect", [
    (lambda t, i, p: 3.0 if t[i] == " 17" else 0.0, 'fires on " 17"'),
    (lambda t, i, p: 2.0 if i > 0 and t[i - 1] == " year" else 0.0, 'fires after " year"'),
    (lambda t, i, p: 1.0 if t[i] in (" 17", " 18") else 0.0, "numbers"),
    (lambda t, i, p: 5.0 if p == 0 else 0.0, "at positions 0-0"),
])
def test_offline_explainer_recovers_planted_rules(rule, expect):
    page = synthetic_page(rule, seed=1)
    split = split_examples(page)
    out = OfflineExplainer().explain(page, split)
    assert expect in out.text
    score = score_text(OfflineSimulator(), out.text, split.held_out)[0].ev_correlation_score
    assert score > 0.95
    cat_page = synthetic_page(lambda t, i, p: float(t[i] == " cat"), seed=2)
    other = OfflineExplainer().explain(cat_page, split_examples(cat_page))
    assert '" cat"' in other.text
    assert score_text(OfflineSimulator(), other.text, split.held_out)[0].ev_correlation_score < 0.3


def test_split_holds_out_every_source_and_keeps_train_disjoint():
    page = synthetic_page(lambda t, i, p: float(t[i] == " cat"))
    split = split_examples(page)
    assert set(split.held_out_sources) == {"top", "quantile", "random"}
    assert not {id(w) for w in split.train} & {id(w) for w in split.held_out}
    assert len(split.train) + len(split.held_out) == 20 + 20 + 16
