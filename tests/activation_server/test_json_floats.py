"""Float32 values printed short: nine significant digits that read back as the same float32."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import torch

from mechscope.activation_server.engine.json_floats import SIGNIFICANT_DIGITS, float32_list


def significant_digits(value: float) -> int:
    mantissa = re.match(r"-?([0-9.]+)", repr(value)).group(1).replace(".", "").strip("0")
    return len(mantissa)


def random_float32(n: int, seed: int) -> torch.Tensor:
    """Uniformly random bit patterns: every exponent, subnormals included, both signs (NaNs dropped)."""
    bits = torch.randint(-2**31, 2**31, (n,), generator=torch.Generator().manual_seed(seed), dtype=torch.int64)
    values = bits.to(torch.int32).view(torch.float32)
    return values[~values.isnan()]


def test_every_value_reads_back_as_the_same_float32():
    values = random_float32(400_000, seed=0)
    short = float32_list(values)
    assert torch.equal(torch.tensor(short, dtype=torch.float32), values)


def test_values_print_with_at_most_nine_significant_digits_where_scaling_is_exact():
    values = random_float32(400_000, seed=1)
    values = values[(values.abs() >= 1e-14) & (values.abs() < 1e28)]
    short = float32_list(values)
    assert max(significant_digits(v) for v in short) == SIGNIFICANT_DIGITS
    # a float32 widened to float64 prints its binary expansion: 17 digits for most
    assert sum(significant_digits(v) > SIGNIFICANT_DIGITS for v in values.tolist()) > 0.9 * len(short)


def test_powers_of_ten_and_their_neighbours_keep_nine_digits():
    # next to 10**k, log10 may round to the wrong side: the exponent must still be the right one
    powers = torch.tensor([10.0 ** k for k in range(-13, 28)], dtype=torch.float32)
    neighbours = torch.cat([powers, powers.nextafter(torch.tensor(0.0)), powers.nextafter(torch.tensor(math.inf))])
    short = float32_list(torch.cat([neighbours, -neighbours]))
    assert torch.equal(torch.tensor(short, dtype=torch.float32), torch.cat([neighbours, -neighbours]))
    assert max(significant_digits(v) for v in short) <= SIGNIFICANT_DIGITS
    assert float32_list(torch.tensor([1.0, 10.0, 0.1, 1.3836298, -123.456])) == [1.0, 10.0, 0.1, 1.3836298, -123.456]


def test_values_are_numpys_shortest_float32_repr_but_for_one_in_ten_thousand():
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(100_000, generator=gen) * torch.pow(10.0, torch.randint(-12, 20, (100_000,), generator=gen))
    short = float32_list(values)
    numpy_repr = [float(str(np.float32(v))) for v in values.tolist()]     # numpy prints a float32 shortest
    longer = [(a, b) for a, b in zip(short, numpy_repr) if a != b]
    assert len(longer) < 30
    assert all(significant_digits(a) == significant_digits(b) + 1 for a, b in longer)


def test_zeros_infinities_and_nan_are_kept_and_shapes_too():
    got = float32_list(torch.tensor([[0.0, -0.0, math.inf], [-math.inf, math.nan, 2.5]]))
    assert got[0][:2] == [0.0, 0.0] and math.copysign(1, got[0][1]) == -1
    assert got[0][2] == math.inf and got[1][0] == -math.inf and math.isnan(got[1][1]) and got[1][2] == 2.5
    assert float32_list(torch.tensor(3.25)) == 3.25


def test_json_of_gaussian_values_is_a_quarter_shorter():
    values = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    assert len(json.dumps(float32_list(values))) < 0.75 * len(json.dumps(values.tolist()))
