"""Verdicts that do not depend on the scale of the numbers (docs/reward.md, "one rule for numbers").

For constants c from 1e-30 to 1e30 (both signs, several mantissas), in each answer form, ``c`` vs ``c*(1+delta)``
is rejected for |delta| >= 1e-3 and accepted for |delta| <= 1e-9 and for the same value written differently, in
both directions (gold and answer swapped), in LaTeX and in plain programming syntax (``3.2*10**-11``, issue 30). A fixed deterministic grid (no hypothesis); each test runs its whole
grid in-process (``grade_answer``, no pool) and lists every failing case.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest

from trl_drgrpo.rewards.grader import grade_answer
from trl_drgrpo.rewards.tolerance import REL_TOL, close

EXPONENTS = (-30, -20, -11, -3, 0, 4, 11, 20, 30)
MANTISSAS = ("1", "3.2", "6.674", "9.99")
REJECT = (Decimal("1e-3"), Decimal("-1e-3"), Decimal("0.17"))
ACCEPT = (Decimal("1e-9"), Decimal("-1e-9"))


def constants() -> list[Decimal]:
    """The grid: every exponent, two mantissas each (rotating through all four), both signs."""
    out = []
    for i, exponent in enumerate(EXPONENTS):
        for mantissa in (MANTISSAS[i % 4], MANTISSAS[(i + 1) % 4]):
            value = Decimal(mantissa).scaleb(exponent)
            out += [value, -value]
    return out


def _mantissa_exponent(v: Decimal) -> tuple[str, int]:
    sign, digits, exponent = v.normalize().as_tuple()
    text = "".join(map(str, digits))
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return ("-" if sign else "") + mantissa, exponent + len(digits) - 1


def latex(v: Decimal) -> str:
    """``3.2\\times10^{-11}``"""
    m, e = _mantissa_exponent(v)
    return f"{m}\\times10^{{{e}}}"


def enote(v: Decimal) -> str:
    """``3.2e-11``"""
    m, e = _mantissa_exponent(v)
    return f"{m}e{e}"


def plain(v: Decimal) -> str:
    """``0.000000000032``, ``32000``"""
    return format(v.normalize(), "f")


def power(v: Decimal, caret: bool = False) -> str:
    """Plain programming syntax: ``3.2*10**-11``, or ``3.2*10^(-11)`` with ``caret``."""
    m, e = _mantissa_exponent(v)
    return f"{m}*10^({e})" if caret else f"{m}*10**{e}"


def integer_literal(text: str) -> bool:
    """Integer literals need an exact match (142.01 is not 142): a separate convention, kept by these tests."""
    return text.lstrip("-").isdigit()


# form name -> (writer of the answer for a value, writer of the same value written differently)
FORMS: dict[str, tuple[Callable[[Decimal], str], Callable[[Decimal], str]]] = {
    "bare": (plain, enote),
    "latex_scientific": (latex, plain),
    "e_notation": (enote, latex),
    "named_x": (lambda v: f"x = {latex(v)}", lambda v: f"x={enote(v)}"),
    "named_delta": (lambda v: f"\\Delta = {enote(v)}", lambda v: f"\\Delta={latex(v)}"),
    "named_constant": (lambda v: f"G = {latex(v)}", lambda v: f"G = {plain(v)}"),
    "tuple": (lambda v: f"({latex(v)}, 2)", lambda v: f"\\left({enote(v)},2\\right)"),
    "interval": (lambda v: f"[{enote(v)}, 10^{{40}})", lambda v: f"\\left[{latex(v)}, 10^{{40}}\\right)"),
    "matrix_entry": (
        lambda v: f"\\begin{{pmatrix}} 1 & {latex(v)} \\\\ 0 & 1 \\end{{pmatrix}}",
        lambda v: f"\\begin{{bmatrix}}1&{enote(v)}\\\\0&1\\end{{bmatrix}}",
    ),
    "equation_coefficient": (lambda v: f"y = {latex(v)} x + 1", lambda v: f"y = 1 + {enote(v)} x"),
    "equation_rearranged": (lambda v: f"{enote(v)} x + y = 3", lambda v: f"2y = 6 - 2 \\cdot {latex(v)} x"),
    "percentage": (lambda v: f"{enote(v * 100)}\\%", enote),
    # plain programming syntax (issue 30)
    "plain_power": (power, latex),
    "plain_caret": (lambda v: power(v, caret=True), enote),
    "plain_tuple": (lambda v: f"({power(v)}, 2)", lambda v: f"\\left({latex(v)},2\\right)"),
    "plain_interval": (lambda v: f"[{power(v)}, oo)", lambda v: f"\\left[{enote(v)}, \\infty\\right)"),
    "plain_equation": (lambda v: f"y = {power(v)}*x + 1", lambda v: f"y = 1 + {latex(v)} x"),
}


def _check(pairs: list[tuple[str, str, float]]) -> None:
    failures = []
    for pred, gold, expected in pairs:
        for a, b in ((pred, gold), (gold, pred)):  # both directions
            got = grade_answer(a, b)
            if got != expected:
                failures.append(f"grade_answer({a!r}, {b!r}) = {got}, expected {expected}")
    assert not failures, f"{len(failures)} wrong verdicts, e.g.\n" + "\n".join(failures[:10])


@pytest.mark.parametrize("form", list(FORMS))
def test_relative_change_of_1e_3_is_rejected_at_every_scale(form):
    write, _ = FORMS[form]
    _check([(write(c), write(c * (1 + d)), 0.0) for c in constants() for d in REJECT])


@pytest.mark.parametrize("form", list(FORMS))
def test_relative_change_of_1e_9_and_other_spellings_are_accepted_at_every_scale(form):
    write, rewrite = FORMS[form]
    pairs = [
        (write(c), write(c * (1 + d)), 0.0 if integer_literal(write(c)) else 1.0)
        for c in constants()
        for d in ACCEPT
    ]
    pairs += [(write(c), rewrite(c), 1.0) for c in constants()]
    _check(pairs)


# Symbolic equality with a tiny or huge constant factor: (answer with factor k, same expression, the k-free part)
EXPRESSIONS = {
    "monomial": (lambda k: f"{enote(k)}*x^2", lambda k: f"x^2 \\cdot {latex(k)}"),
    "polynomial": (lambda k: f"{latex(k)}(x+1)^2", lambda k: f"{enote(k)}x^2 + 2*{enote(k)}x + {enote(k)}"),
    "function": (lambda k: f"{enote(k)} \\sin(x) + 1", lambda k: f"1 + \\sin(x) \\cdot {latex(k)}"),
    "fraction": (lambda k: f"\\frac{{{latex(k)}}}{{x+1}}", lambda k: f"{enote(k)}/(1+x)"),
    # plain programming syntax (issue 30)
    "plain_function": (lambda k: f"{power(k)}*sin(x) + 1", lambda k: f"1 + \\sin(x) \\cdot {latex(k)}"),
    "plain_exp_log": (lambda k: f"{enote(k)}*exp(x)*log(x)", lambda k: f"{latex(k)} e^{{x}} \\ln x"),
    "plain_constant": (lambda k: f"{power(k)}*cos(pi/3)", lambda k: f"\\frac{{{latex(k)}}}{{2}}"),
}


@pytest.mark.parametrize("form", list(EXPRESSIONS))
def test_symbolic_equality_is_relative_to_the_constant_factor(form):
    write, rewrite = EXPRESSIONS[form]
    pairs = [(write(k), write(k * (1 + d)), 0.0) for k in constants() for d in REJECT]
    pairs += [(write(k), write(k * (1 + d)), 1.0) for k in constants() for d in ACCEPT]
    pairs += [(write(k), rewrite(k), 1.0) for k in constants()]
    _check(pairs)


def test_the_reported_wrong_accept():
    """A constant of order 1e-11 written as an equation, against a value 17% off: rejected like the bare pair."""
    assert grade_answer(r"G = 6.674\times10^{-11}", r"G = 7.8\times10^{-11}") == 0.0
    assert grade_answer(r"6.674\times10^{-11}", r"7.8\times10^{-11}") == 0.0
    assert grade_answer(r"G = 6.674\times10^{-11}", r"G = 6.674 \times 10^{-11}") == 1.0


def test_exactly_written_values_of_any_scale():
    assert grade_answer(r"\frac{1}{10^{40}}", "1e-40") == 1.0
    assert (
        grade_answer(r"\frac{1}{10^{40}}", r"\frac{1}{10^{40}} + \frac{1}{10^{48}}") == 0.0
    )  # exact: unequal
    assert grade_answer(r"\sqrt{2} \cdot 10^{-40}", r"\sqrt{2} \cdot 10^{-40} (1 + 10^{-7})") == 0.0
    assert grade_answer(r"\sqrt{2} \cdot 10^{-40}", r"\frac{10^{-40}}{\sqrt{2}} \cdot 2") == 1.0


def test_integer_literals_stay_exact():
    """The separate convention: an integer written as one needs an exact match (142.01 is not 142)."""
    assert grade_answer("1", "1.000000001") == 0.0 and grade_answer("1.0", "1.000000001") == 1.0
    assert grade_answer("32000", "32000.000032") == 0.0 and grade_answer("32000", "32000.0") == 1.0


def test_zero_is_close_only_to_zero():
    assert close(0.0, 0.0) and close(Fraction(0), Fraction(0))
    assert not close(0.0, 1e-300) and not close(Fraction(0), Fraction(1, 10**400))
    assert grade_answer("0", "1e-30") == 0.0 and grade_answer("1e-30", "0") == 0.0
    assert grade_answer("x = 0", "x = 1e-30") == 0.0


def test_close_is_relative_and_exact_on_fractions():
    assert close(1e-300, 1e-300 * (1 + REL_TOL / 2)) and not close(1e-300, 1.001e-300)
    assert close(1e300, 1e300 * (1 + REL_TOL / 2)) and not close(1e300, 1.001e300)
    # beyond float range: no underflow to 0 == 0, no overflow to inf == inf
    tiny = Fraction(1, 10**400)
    assert not close(tiny, 2 * tiny) and close(tiny, tiny * Fraction(10**9 + 1, 10**9))
    assert not close(1 / tiny, 2 / tiny)
    assert not close(float("inf"), float("inf") * 0 + 1.0) and not close(float("nan"), float("nan"))


def test_rounding_noise_is_judged_against_the_terms():
    """An expression that is 0 comes out of floating point as noise; it equals 0 (the terms' scale decides), while
    a tiny value that is not noise (a tiny constant factor) does not."""
    assert grade_answer("(x+1)^2 - x^2 - 2x - 1", "0") == 1.0
    assert grade_answer("10^{-30}(x+1)^2 - 10^{-30}x^2 - 2 \\cdot 10^{-30} x", "10^{-30}") == 1.0
    assert grade_answer("10^{-30} x", "0") == 0.0


def test_math_verify_fallback_is_not_absolute():
    """Math-Verify (the last resort) chops small values and rounds decimals to 6 places: not used on tiny values,
    and its rounding keeps six significant digits."""
    from trl_drgrpo.rewards.symbolic import math_verify_equal

    assert not math_verify_equal("1e-30", "2e-30")
    assert not math_verify_equal(r"6.674\times10^{-11}", r"7.8\times10^{-11}")
    assert not math_verify_equal("1.23e-5", "1.24e-5") and not math_verify_equal("0.0000123", "0.0000124")
    assert math_verify_equal("0.5", r"\frac{1}{2}") and math_verify_equal(r"\sqrt{4}", "2")
