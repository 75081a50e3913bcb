"""The fast reader agrees with latex2sympy on its subset and declines everything else."""

from __future__ import annotations

import pytest

from trl_drgrpo.rewards.symbolic import _fast, _to_sympy

SUBSET = [
    "x^23", "2^10", "x^ab", "x_12y", "2.5^2", "-x^2", "-2^2", r"\frac{1}{2}x", r"2\sqrt{2}x", "(x+1)(x-1)",
    "x/2y", "a/bc", "e^{t}", "ce^{-2t}", "2i", r"\pi r^2", r"\sin(\omega t)", "x_0y_{12}", r"\alpha", "2^{-1}",
    r"\sqrt[3]{x}", "0.5x", "2pi", "(2*pi)/omega", "sqrt(3)/2", "x**2", r"\frac{a M^{1/3}}{G M^{2/3}+b}",
    r"100p^{\frac{1}{2}}", r"\frac{\sqrt{3}}{2}", r"\cos(2t)",
]  # fmt: skip
DECLINED = ["f(x)", "oo", r"\sin^2(t)", r"\log(x)", "x!", "1,2", "x=1", r"\omega_0", "[0,1]", r"\binom{5}{2}"]


@pytest.mark.parametrize("text", SUBSET)
def test_fast_reader_matches_latex2sympy(text):
    import sympy

    fast, slow = _fast(text), _to_sympy(text)
    assert fast is not None
    assert fast.free_symbols == slow.free_symbols
    assert sympy.simplify(fast - slow) == 0


@pytest.mark.parametrize("text", DECLINED)
def test_fast_reader_declines_the_rest(text):
    assert _fast(text) is None
