"""The attention softmax that pads short key rows (a CPU speed workaround) against torch's softmax."""

from __future__ import annotations

import pytest
import torch

from mechscope.inference.model import SHORT_SOFTMAX, _causal, _softmax_over_keys


@pytest.mark.parametrize("n_keys", [1, 2, 7, 15, SHORT_SOFTMAX, SHORT_SOFTMAX + 5])
def test_short_rows_match_softmax_values_and_gradients(n_keys):
    gen = torch.Generator().manual_seed(n_keys)
    scores = torch.randn(3, 4, n_keys, n_keys, generator=gen) * 4
    scores = scores.masked_fill(~_causal(n_keys, n_keys, scores.device), float("-inf"))   # causal: -inf above
    upstream = torch.randn(scores.shape, generator=gen)

    ours = scores.clone().requires_grad_(True)
    reference = scores.clone().requires_grad_(True)
    got, want = _softmax_over_keys(ours), reference.softmax(-1)
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert torch.equal(got == 0, want == 0)               # masked keys get exactly 0 weight
    (got * upstream).sum().backward()
    (want * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-5, atol=1e-6)


def test_a_fully_masked_row_is_nan_as_with_softmax():
    scores = torch.full((1, 1, 2, 5), float("-inf"))
    scores[0, 0, 1] = torch.arange(5.0)
    got, want = _softmax_over_keys(scores), scores.softmax(-1)
    assert torch.isnan(got[0, 0, 0]).all() and torch.isnan(want[0, 0, 0]).all()
    torch.testing.assert_close(got[0, 0, 1], want[0, 0, 1])
