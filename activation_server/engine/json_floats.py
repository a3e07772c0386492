"""Float32 tensors as Python floats that print short in JSON.

A float32 value converted to a Python float is a float64, and JSON writers print a float64 with up
to 17 significant digits: 1.3836298 becomes 1.3836297988891602. The eight digits after the ninth
carry nothing (nine significant digits read back as exactly the same float32: C's
FLT_DECIMAL_DIG), and most need only seven or eight, yet the extra digits were a fifth of an
attribution answer's bytes. :func:`float32_list` rounds each value to the fewest digits that read
back as the same float32 first, on the whole tensor at once.
"""

from __future__ import annotations

import numpy as np
import torch

SIGNIFICANT_DIGITS = 9     # FLT_DECIMAL_DIG: enough for every float32 to read back unchanged
_FEWEST_TRIED = 7          # fewer digits come out as themselves anyway (see float32_list)
# 10**k for k from -46 (below the smallest float32) to 53 (the scale of the smallest to 9 digits)
_LOWEST = -46
_POWERS = np.array([float(f"1e{k}") for k in range(_LOWEST, 54)])
# by decimal places p (from -40 to 53: a float32's largest to 7 digits, its smallest to 9):
# what to multiply by before rounding to an integer (10**p, or 1 when p < 0) and what to divide by
_FIRST_PLACES = -40
_UP = np.array([float(f"1e{max(p, 0)}") for p in range(_FIRST_PLACES, 54)])
_DOWN = np.array([float(f"1e{max(-p, 0)}") for p in range(_FIRST_PLACES, 54)])


def float32_list(t: torch.Tensor) -> list:
    """``t.tolist()`` for a tensor of float32 (or narrower) values, each finite nonzero one as the
    decimal of 7, 8 or 9 significant digits nearest to it with the fewest digits that reads back as
    the same float32. Shorter decimals come out as themselves (0.1 for float32(0.1)), so this is
    numpy's shortest float32 repr, except for about 1 value in 10,000 that gets one digit more.
    Beyond about 1e-14 to 1e+28 (where scaling by a power of ten is no longer exact) values are
    still the same float32, printed longer. Zeros, infinities and NaN are left as they are.

    In numpy rather than torch: a few dozen operations on a few thousand values, where torch's
    fixed cost per operation would be most of the time."""
    if t.dtype == torch.float64:
        raise TypeError("float32_list rounds float32 values; a float64 tensor would lose precision")
    single = np.atleast_1d(t.detach().to(torch.float32).cpu().numpy())
    x = single.astype(np.float64)
    magnitude = np.abs(x)
    rounded = np.isfinite(magnitude) & (magnitude > 0)
    safe = np.where(rounded, magnitude, 1.0)
    exponent = np.floor(np.log10(safe)).astype(np.int64)     # may be off by one next to a power of ten:
    exponent -= safe < _POWERS[exponent - _LOWEST]
    exponent += safe >= _POWERS[exponent + 1 - _LOWEST]
    short = _to_digits(x, exponent, SIGNIFICANT_DIGITS)                 # always reads back the same
    for digits in range(SIGNIFICANT_DIGITS - 1, _FEWEST_TRIED - 1, -1):
        candidate = _to_digits(x, exponent, digits)
        np.copyto(short, candidate, where=candidate.astype(np.float32) == single)  # shorter where it does too
    np.copyto(short, x, where=~rounded)
    return short.reshape(t.shape).tolist()


def _to_digits(x: np.ndarray, exponent: np.ndarray, digits: int) -> np.ndarray:
    """``x`` (``exponent`` its decimal exponent) rounded to ``digits`` significant digits: scaled
    by 10**places, rounded to an integer, scaled back. Multiplying and dividing by an exact power of
    ten (up to 10**22) each round once, so the result is the float64 nearest the decimal, which
    prints as that decimal."""
    at = digits - 1 - _FIRST_PLACES - exponent      # decimal places kept, as an index into _UP, _DOWN
    up, down = _UP[at], _DOWN[at]
    scaled = np.round(x * up / down)
    scaled *= down
    scaled /= up
    return scaled
