"""Comparing two attribution results that should be the same computation.

A request answered alone and the same request answered inside a shared batch run the same
arithmetic in a different matrix shape, so floats agree to rounding (~1e-6), not bit for bit. These
helpers check everything a user sees: the same prompts, tokens, predictions and node rows, and every
number to a tolerance far below any value the debugger reports as meaningful."""

from __future__ import annotations

import pytest

from mechscope.activation_server.schemas import AttributionResult

TOL = dict(abs=2e-5, rel=1e-4)


def assert_same_attribution(got: AttributionResult, want: AttributionResult) -> None:
    assert got.explained == want.explained
    assert len(got.prompts) == len(want.prompts)
    for g, w in zip(got.prompts, want.prompts):
        assert (g.tokens, g.token_ids, g.loss_position) == (w.tokens, w.token_ids, w.loss_position)
        assert g.loss == pytest.approx(w.loss, **TOL)
        assert g.bias_direct_effect == pytest.approx(w.bias_direct_effect, **TOL)
        assert len(g.target_predictions) == len(w.target_predictions)
        for gp, wp in zip(g.target_predictions, w.target_predictions):
            assert (gp.token_id, gp.rank) == (wp.token_id, wp.rank)
            assert gp.logit == pytest.approx(wp.logit, **TOL)
        assert [p.token_id for p in g.top_predictions] == [p.token_id for p in w.top_predictions]
        assert len(g.token_summaries) == len(w.token_summaries)
        for gs, ws in zip(g.token_summaries, w.token_summaries):
            assert gs.token == ws.token
            for name, value in ws.model_dump().items():
                if isinstance(value, float):
                    assert getattr(gs, name) == pytest.approx(value, **TOL), name
    assert sorted(r.key for r in got.nodes) == sorted(r.key for r in want.nodes)
    wanted = {r.key: r for r in want.nodes}
    for row in got.nodes:
        other = wanted[row.key]
        assert row.positions == other.positions and row.key_positions == other.key_positions
        for gv, wv in zip(row.values, other.values):
            assert (gv is None) == (wv is None), row.key
            if gv is not None:
                for name, value in wv.model_dump().items():
                    if value is not None:
                        assert getattr(gv, name) == pytest.approx(value, **TOL), (row.key, name)
