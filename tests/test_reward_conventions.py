"""Each answer-form class of issue 8, as a general rule, in both directions, with the wrong accepts it must avoid."""

from __future__ import annotations

import pytest

from trl_drgrpo.rewards.grader import grade, grade_answer
from trl_drgrpo.rewards.normalization import normalize_answer
from trl_drgrpo.rewards.symbolic import structure_ok

EQUAL = {
    "text_wrappers": [
        (r"\text{807}", "807"),
        (r"\textbf{807}", "807"),
        (r"\textnormal{807}", "807"),
        (r"\mathrm{807}", "807"),
        (r"\mathcal{B}", "B"),
        (r"\mathbf{\text{12}}", "12"),
        (r"\text{(C)}", "C"),
    ],
    "and_lists": [
        (r"6 \text{ and } 8", "6, 8"),
        (r"12\text{ and }13", "12, 13"),
        ("19, 46, and 82", r"19, 46, \text{ and } 82"),
        ("8 and 6", "6, 8"),
    ],
    "exponent_juxtaposition": [("2^6 3^5", r"2^{6} \cdot 3^{5}")],
    "primes": [("f'(x)", r"f^{\prime}(x)"), ("E'", r"E^\prime")],
    "equations": [
        ("2x+4y-3=0", r"y=-\frac{1}{2}x+\frac{3}{4}"),
        (r"y=-\frac{1}{2}x+\frac{3}{4}", "2x+4y-3=0"),
        ("-34x-45y+20z-100=0", "34x+45y-20z+100=0"),
        ("x^2+y^2=4", "2x^2+2y^2-8=0"),
    ],
    "matrices": [
        (
            r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
            r"\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]",
        ),
        (r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"),
        (r"\begin{pmatrix} \frac12 \\ 2 \end{pmatrix}", r"\left(\begin{matrix} 0.5 \\ 2 \end{matrix}\right)"),
    ],
    "complex": [("1+2i", "i(2-i)"), ("i(2-i)", "1+2i"), (r"\frac{1}{2}-\frac{i}{2}", r"\frac{1-i}{2}")],
    "percent": [
        ("28 pct", r"28\%"),
        ("28 percent", r"28\%"),
        (r"28\%", "28"),
        ("0.28", r"28\%"),
        ("62.5*(1/100)", r"62.5\%"),
        (r"10\%", "0.1"),
    ],
    "plain_greek": [("(2*pi)/omega", r"\frac{2\pi}{\omega}"), ("2*theta", r"2\theta")],
    "inequalities": [("-x >= -1", "x <= 1"), (r"5 \geq x", r"x \leq 5"), ("-x>-1", "x<1")],
    "intervals": [
        (r"x \in [-2,7]", r"-2 \le x \le 7"),
        ("(-793, 10)", "-793 < a < 10"),
        ("(0,1)", "0<f(x)<1"),
    ],
    "plus_minus": [(r"\{-2021, 2021\}", r"\pm 2021"), (r"1-\sqrt{2}, 1+\sqrt{2}", r"1\pm\sqrt{2}")],
    "separators": [("(4, 0, 6), (0, 0, 0)", "(0;0;0),(4;0;6)"), ("{2, 3, 5}", "2, 3, 5")],
    "gold_solutions": [("1, 2", r"\boxed{1} and \boxed{2}"), ("004", r"so \boxed{004}. Again: \boxed{004}")],
    "doubled_backslashes": [
        (r"\\frac{1}{2}", "0.5"),
        (r"\left( 3, \\frac{\\pi}{2} \\right)", r"(3, \frac{\pi}{2})"),
    ],
    "named_answers": [("(x, y) = (5, 8) \\text{ and } (8, 5)", "(5, 8), (8, 5)"), ("4, 5", "AB=4,CD=5")],
    "braced_exponents": [("e^{2x}", "e^{x} e^{x}"), ("x^{12}", "x^{6} x^{6}"), ("x^{2}", "x^2")],
}

NOT_EQUAL = {
    "no_digit_gluing": [
        ("2 3", "23"),
        (r"6 \text{ and } 8", "68"),
        ("1 2 3", "123"),
        ("2^6 3^5", "2^{63^5}"),
    ],
    "primes": [("E'", "E"), ("f'(x)", "f(x)"), ("f''(x)", "f'(x)")],
    "equations": [
        ("2x+4y-3=0", r"y=-\frac{1}{2}x+\frac{1}{4}"),
        ("x=5", "y=5"),
        ("x^2=4", "x=2"),
        ("2x+4y=3", "2x+4y=0"),
    ],
    "matrices": [
        (
            r"\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}",
            r"\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]",
        ),
        (r"\begin{vmatrix} 1 & 2 \\ 3 & 4 \end{vmatrix}", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"),
        (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}"),
    ],
    "complex": [("1-2i", "i(2-i)"), ("0", "i^2+1"), ("2+i", "1+2i")],
    "percent": [("28", "0.28"), ("0.28", "28"), ("28/100", "28"), (r"2.8\%", "28")],
    "text_wrappers": [(r"\text{807}", "870"), (r"\mathcal{B}", "C")],
    "lists_are_not_thousands": [("32, 349", "32349"), ("1, 2, 2", "1, 2")],
    "inequalities": [("x<1", "x<=1"), ("x<1", "x>1"), ("[0,1]", "0<x<1")],
    "plus_minus": [("2021", r"\pm 2021")],
    "gold_solutions": [("1, 2", r"\boxed{1} no no no \boxed{2}")],
    "prose": [("We find that x = 3", "3")],
    # issue 30: x^{2y} keeps its braces (it was normalized to x^2y, read as x^2 * y)
    "braced_exponents": [("x^{2y}", "x^2 y"), ("e^{2x}", "e^2 x"), ("x_{ab}", "x_a b")],
}


@pytest.mark.parametrize(("family", "pred", "gold"), [(f, p, g) for f, cs in EQUAL.items() for p, g in cs])
def test_equal(family, pred, gold):
    assert grade_answer(pred, gold) == 1.0, (normalize_answer(pred), normalize_answer(gold))
    assert grade(rf"The answer is $\boxed{{{pred}}}$.", gold) == 1.0


@pytest.mark.parametrize(
    ("family", "pred", "gold"), [(f, p, g) for f, cs in NOT_EQUAL.items() for p, g in cs]
)
def test_not_equal(family, pred, gold):
    assert grade_answer(pred, gold) == 0.0, (normalize_answer(pred), normalize_answer(gold))


def test_boxed_text_from_the_issue():
    assert grade(r"so $\boxed{\text{807}}$", "807") == 1.0
    assert grade(r"so $\boxed{1+x}$", "x+1") == 1.0


DEEP = {
    "nested_frac_20": "\\frac{1}{" * 20 + "2" + "}" * 20,
    "continued_fraction_16": "1+\\frac{1}{" * 16 + "2" + "}" * 16,
    "nested_sin_55": "\\sin(" * 55 + "x" + ")" * 55,
    "nested_parens_4": "x(1+x(1+x(1+x(1+x))))",
}


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_structures_are_bounded_before_sympy(name):
    """Refused by their structure (no parse is attempted), so they cost microseconds on any machine."""
    answer = DEEP[name]
    assert not structure_ok(normalize_answer(answer))
    assert grade_answer(answer, "x+2") == 0.0
    assert grade_answer(answer, answer) == 1.0  # the same string still matches


def test_moderate_nesting_still_reaches_sympy():
    cf = "1+\\frac{1}{1+\\frac{1}{1+\\frac{1}{2}}}"  # = 8/5
    assert structure_ok(normalize_answer(cf))
    assert grade_answer(cf, r"\frac{8}{5}") == 1.0
    assert grade_answer(cf, r"\frac{8}{3}") == 0.0
