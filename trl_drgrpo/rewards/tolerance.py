"""The grader's one rule for comparing two computed values: relative to the magnitudes involved, never absolute.

``close(a, b, rel_tol)`` holds when ``a == b`` or ``|a - b| <= rel_tol * max(|a|, |b|)``. Zero is exact: 0 is
close only to 0 (``0`` vs ``1e-30`` is unequal), since no absolute threshold could be right for every scale. The
same rule compares numbers, tuple and matrix entries, equation coefficients, the values of two expressions at a
sample point and the ratios of two equations' sides; only ``rel_tol`` depends on how a value was obtained:

- ``REL_TOL`` (1e-4) for values written inexactly (decimals, floats in an expression);
- ``EXACT_TOL`` (1e-6) for floating-point values of exactly written expressions, a pre-check only: exact values
  that pass it are then confirmed at 30 digits, within ``CONFIRM_TOL`` (1e-25) of the magnitude of their terms;
- ``RATIO_TOL`` (1e-9) for the ratio of two exactly written equations' sides (``2y = 4x + 2`` is ``y = 2x + 1``).

A floating-point result that is mathematically zero (``(x+1)^2 - x^2 - 2x - 1``) comes out as rounding noise, not
0: a value is *negligible* when it is at most ``NOISE`` times the magnitude of the terms that produced it (the sum
of their absolute values), which again scales with the input, unlike a fixed threshold.
"""

from __future__ import annotations

import math
from fractions import Fraction

from .limits import REL_TOL

EXACT_TOL = 1e-6
CONFIRM_TOL = 1e-25
RATIO_TOL = 1e-9
NOISE = 1e-12

__all__ = ["CONFIRM_TOL", "EXACT_TOL", "NOISE", "RATIO_TOL", "REL_TOL", "close", "negligible"]


def close(a: complex, b: complex, rel_tol: float = REL_TOL) -> bool:
    """``a == b`` or ``|a - b| <= rel_tol * max(|a|, |b|)`` (finite values; 0 is close only to 0).

    Two ``Fraction`` values are compared exactly (no float underflow or overflow: ``1e-400`` is not ``2e-400``).
    """
    if a == b:
        return True
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))
    if not (_finite(a) and _finite(b)):
        return False
    return abs(a - b) <= rel_tol * max(abs(a), abs(b))


def negligible(value: complex, magnitude: float) -> bool:
    """Whether ``value`` is rounding noise next to ``magnitude``, the size of the terms that produced it."""
    return abs(value) <= NOISE * magnitude


def _finite(z: complex) -> bool:
    return math.isfinite(z.real) and math.isfinite(z.imag) if isinstance(z, complex) else math.isfinite(z)
