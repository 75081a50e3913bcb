"""Answers written in plain programming syntax (sympy / calculator style), on either side (issue 30).

The classes of the issue, each with examples of our own, the wrong accepts each must avoid, the two conventions
that are a choice (``e``/``E`` and ``log``), the bounds, and cases written after public datasets' answer columns:

- DeepMind mathematics_dataset, README "Example questions" (github.com/google-deepmind/mathematics_dataset,
  README.md): answers such as ``546*a**2 - 108*a - 118``, ``54*a - 30``, ``1/110``;
- the same project's ``mathematics_dataset/modules/arithmetic_test.py`` (commit 2db4c1cf): surds such as
  ``sqrt(2)/(-1 + 2*sqrt(2))**2``, whose test gives its value as ``8/49 + 9/49 * sqrt(2)``;
- GSM8K (huggingface.co/datasets/openai/gsm8k, train row 0): the calculator annotation ``48/2`` and
  ``48+24``, final answer ``#### 72``.
"""

from __future__ import annotations

import time

import pytest

from trl_drgrpo.rewards.grader import Outcome, grade, grade_answer, grade_answer_outcome
from trl_drgrpo.rewards.normalization import normalize_answer
from trl_drgrpo.rewards.plainparse import is_plain, plain_read

EQUAL = {
    "products_and_calls": [
        ("2*cos(pi*t/3)+1", r"2\cos(\frac{\pi}{3}t)+1"),
        ("log(a)*a^x", r"a^x \ln a"),
        ("7*cos(sqrt(50/2)*u)", r"7\cos(5u)"),
        ("sin(t)/(1-sin(t)**2)", r"\frac{\sin t}{1-\sin^2 t}"),
        ("3*x*y^0", "3x"),
        ("2sin(x)cos(x)", r"2\sin(x)\cos(x)"),
        ("sec(x)", r"\frac{1}{\cos x}"),
        ("sin(x)**2 + cos(x)**2", "1"),
    ],
    "powers": [("x**2 - 2*x + 1", "(x-1)^2"), ("2^(x+1)", "2*2**x"), ("x**-1", r"\frac{1}{x}")],
    "tuples_lists_equations": [
        ("(2, 5*sin(u)*cos(u))", r"(2, 5\sin u \cos u)"),
        ("[1, 2*x]", "[1,2x]"),
        ("y = 3*sin(x) + 1", r"y=3\sin x+1"),
        ("x**2 + y**2 = 9", "x^2+y^2=9"),
        ("-sqrt(2), sqrt(2)", r"\pm\sqrt{2}"),
    ],
    "infinity_words": [
        ("(-infinity, 3]", r"(-\infty, 3]"),
        ("[1, inf)", r"[1,\infty)"),
        ("(-oo, 0)", r"(-\infty,0)"),
        ("infinity", r"\infty"),
    ],
    "constant_values": [
        ("cos(pi/3)", "1/2"),
        ("sin(pi/6)", "0.5"),
        ("sqrt(8)", r"2\sqrt{2}"),
        ("log(8)/log(2)", "3"),
        ("4*atan(1)", r"\pi"),
        ("abs(-7/2)", "3.5"),
        ("acos(1/2)", r"\frac{\pi}{3}"),
        ("exp(0)", "1"),
    ],
    "inverses": [("asin(x)", r"\arcsin x"), ("arctan(x)", r"\arctan(x)"), ("asec(x)", "acos(1/x)")],
    "euler": [("E**2", "e^2"), ("exp(1)", "e"), ("exp(2*x)", "e^{2x}"), ("3*E**x", "3e^x")],
    "natural_log": [("log(x)", r"\ln x"), ("log(100, 10)", "2"), ("log(x, 2)", r"\log_2 x")],
    "scientific": [("3.2e-11*sin(x)", r"3.2\times10^{-11}\sin x"), ("6.674*10**-11", r"6.674\times10^{-11}")],
}

NOT_EQUAL = {
    "functions": [
        ("sin(x)**2", "sin(x**2)"),
        ("acos(x)", "1/cos(x)"),
        ("sec(x)", r"\frac{1}{\sin x}"),
        ("abs(x)", "x"),
        ("-3*tan(pi*y/4)", r"3\tan(\frac{\pi}{4}y)"),
        ("asin(x)", r"\frac{1}{\sin x}"),
    ],
    "constant_values": [
        ("cos(pi/3)", "0.51"),
        ("sqrt(2)", "1.41"),
        ("pi", "3.14"),
        ("log(8)/log(2)", "3.01"),
        ("exp(2)", "7.4"),
    ],
    "intervals": [("[2, oo)", "(2, inf)"), ("(-inf, 3)", "(-inf, 3]"), ("(-oo, 0)", "(0, oo)")],
    "euler_is_never_a_variable": [("e*x", "x"), ("e + 1", "x + 1"), ("2*e", "2*E**0")],
    # ``log`` is natural (sympy); the LaTeX ``\log`` keeps latex2sympy's base-10 reading: never equal
    "log_base": [("log(x)", r"\log x"), ("log(100)", "2"), ("ln(x)", r"\log_{10} x")],
    "precedence": [("1/2*x", "1/(2*x)"), ("1/2x", "x/2"), ("2**3**0", "8")],
    "glued_names_are_not_calls": [("sinx", r"\sin x"), ("f(x)", "g(x)")],
}


@pytest.mark.parametrize(("family", "pred", "gold"), [(f, p, g) for f, cs in EQUAL.items() for p, g in cs])
def test_equal_both_directions(family, pred, gold):
    assert grade_answer(pred, gold) == 1.0, (normalize_answer(pred), normalize_answer(gold))
    assert grade_answer(gold, pred) == 1.0
    assert grade(rf"The answer is $\boxed{{{pred}}}$.", gold) == 1.0


@pytest.mark.parametrize(
    ("family", "pred", "gold"), [(f, p, g) for f, cs in NOT_EQUAL.items() for p, g in cs]
)
def test_not_equal_both_directions(family, pred, gold):
    assert grade_answer(pred, gold) == 0.0, (normalize_answer(pred), normalize_answer(gold))
    assert grade_answer(gold, pred) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Cases written after public datasets' answer columns (sources in the module docstring)
# ---------------------------------------------------------------------------------------------------------------

DATASET_EQUAL = [
    ("546*a**2 - 108*a - 118", "546a^2-108a-118"),  # DeepMind README: derivative answer
    ("54*a - 30", "6(9a-5)"),  # DeepMind README: composed functions
    ("1/110", r"\frac{1}{110}"),  # DeepMind README: probability
    ("sqrt(2)/(-1 + 2*sqrt(2))**2", r"\frac{8}{49}+\frac{9\sqrt{2}}{49}"),  # DeepMind arithmetic_test
    ("1/2 + 3*sqrt(5)/2", r"\frac{1+3\sqrt{5}}{2}"),  # DeepMind arithmetic_test
    ("3*sqrt(5)/2", r"\frac{3}{2}\sqrt5"),  # DeepMind arithmetic_test
    ("48+48/2", "72"),  # GSM8K train row 0: the calculator steps written as one expression
    ("72", "72.00"),  # GSM8K-style numeric golds
]
DATASET_NOT_EQUAL = [
    ("546*a**2 - 108*a + 118", "546a^2-108a-118"),
    ("546*a**3 - 108*a - 118", "546a^2-108a-118"),
    ("54*a + 30", "6(9a-5)"),
    ("sqrt(2)/(-1 + 2*sqrt(2))**2", r"\frac{9}{49}+\frac{8\sqrt{2}}{49}"),
    ("sqrt(2)/(-1 + 2*sqrt(2))", r"\frac{8}{49}+\frac{9\sqrt{2}}{49}"),
    ("48/2", "72"),
    ("48+48*2", "72"),
]


@pytest.mark.parametrize(("pred", "gold"), DATASET_EQUAL)
def test_dataset_style_answers_equal(pred, gold):
    assert grade_answer(pred, gold) == 1.0 and grade_answer(gold, pred) == 1.0


@pytest.mark.parametrize(("pred", "gold"), DATASET_NOT_EQUAL)
def test_dataset_style_answers_not_equal(pred, gold):
    assert grade_answer(pred, gold) == 0.0 and grade_answer(gold, pred) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# The reader: what it reads, what it declines, and that LaTeX is left to the LaTeX readers
# ---------------------------------------------------------------------------------------------------------------

# explicit syntax only: sympy's own parser (on these fixed test strings, never on model text) is the reference
AGREES_WITH_SYMPY = [
    "3*tan(pi*y/4) - 2", "log(b)*b**t", "5*sin(sqrt(72/2)*s)", "E**2", "exp(-x**2/2)", "acos(x) + asin(x)",
    "sec(x)*csc(x)*cot(x)", "Abs(x - 1)", "log(x, 2)", "sinh(x)/cosh(x)", "x**-2", "(x + 1)**3/(x - 1)",
    "2.5*x**2", "-x**2", "pi/4", "sqrt(x)*x**(1/3)",
]  # fmt: skip
DECLINED = [
    "f(x)", "x(x+1)", "log10(x)", "sinx + sin(x)", "x! + sin(x)", "sin(x) < 1", "|x| + sin(x)", "sin(x, y)",
    "9**(4999*4999)", "sin x", "pix + sin(x)", "a_{1b} + sin(x)",
]  # fmt: skip


@pytest.mark.parametrize("text", AGREES_WITH_SYMPY)
def test_plain_reader_agrees_with_sympy(text):
    import sympy
    from sympy.parsing.sympy_parser import parse_expr

    ours = plain_read(text)
    reference = parse_expr(text, local_dict={"E": sympy.E})
    assert ours is not None
    assert sympy.simplify(ours - reference) == 0


@pytest.mark.parametrize("text", DECLINED)
def test_plain_reader_declines_the_rest(text):
    assert plain_read(text) is None


def test_latex_is_not_plain():
    """LaTeX answers keep their readers (the paper's conventions): any backslash, or no plain marker."""
    for text in (r"\sin(x)", r"\frac{\pi}{2}", "x^2+1", "2x+3", r"3\tan(\frac{\pi}{4}y)", "E^2", "e^{2x}"):
        assert not is_plain(normalize_answer(text)), text
    for text in ("sin(x)", "x**2", "2*pi", "[2, oo)", "log(x)"):
        assert is_plain(normalize_answer(text)), text


def test_e_rule():
    """``e`` is Euler's number in both syntaxes; ``E`` is Euler's number in plain syntax (a side with ``**``, a
    call or a constant's name), a letter elsewhere (``E^2`` with no other mark, ``E'``)."""
    assert grade_answer("E**2", "exp(2)") == 1.0 and grade_answer("E**2", "e^2") == 1.0
    assert grade_answer("E**2", "E^2") == 0.0  # E^2 alone is a letter squared, as the LaTeX readers read it
    assert grade_answer("E^2", "E^2") == 1.0 and grade_answer("E", "e") == 0.0
    assert grade_answer("2.7183", "exp(1)") == 1.0 and grade_answer("2.718", "exp(1)") == 0.0  # 1e-4 relative


# ---------------------------------------------------------------------------------------------------------------
# Pathological inputs in plain syntax: a graded 0, bounded by the input's structure
# ---------------------------------------------------------------------------------------------------------------

PATHOLOGICAL = {
    "power_tower": ("2**2**2**2**2**2", "4"),
    "caret_tower": ("2^(2^(2^(2^2)))", "1"),
    "computed_huge_exponent": ("9^(4999*4999)", "1"),
    "computed_huge_exponent_stars": ("9**(4999*4999)", "1"),
    "huge_literal_exponent": ("9**99999", "9**99998"),
    "exp_tower": ("exp(exp(exp(100)))", "exp(exp(exp(100)))+1"),
    "nested_calls": ("sin(" * 40 + "x" + ")" * 40, "sin(x)"),
    "many_calls": ("sin(x)" * 40, "1"),
    "big_polynomial": ("(x+y+z)**200", "(x+y+z)**201"),
    "long_word": ("x" * 300 + "*sin(x)", "x"),
    "log_of_zero": ("log(0)", "-oo"),
    "division_by_zero": ("1/0", "oo"),
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_plain_inputs_are_bounded(name):
    pred, gold = PATHOLOGICAL[name]
    start = time.process_time()
    assert grade_answer_outcome(pred, gold) == (0.0, Outcome.GRADED)
    assert grade_answer_outcome(gold, pred) == (0.0, Outcome.GRADED)
    assert time.process_time() - start < 5.0  # generous: these are refused by structure, in milliseconds


# ---------------------------------------------------------------------------------------------------------------
# No wrong accept on generated pairs: sympy's simplify on our own generated strings is the reference
# ---------------------------------------------------------------------------------------------------------------

_ATOMS = ("x", "2", "3", "pi", "E", "1/2", "y", "0.5")
_CALLS = ("sin", "cos", "tan", "exp", "log", "sqrt", "abs", "atan", "sec")


def _generated(rng, depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(_ATOMS)
    if rng.random() < 0.3:
        return f"{rng.choice(_CALLS)}({_generated(rng, depth - 1)})"
    op = rng.choice(("+", "-", "*", "/", "**"))
    if op == "**":
        return f"({_generated(rng, depth - 1)})**{rng.choice(('2', '3', '-1', '(1/2)'))}"
    return f"({_generated(rng, depth - 1)}){op}({_generated(rng, depth - 1)})"


def test_generated_pairs_make_no_wrong_accept():
    """150 fixed pseudo-random pairs (half of them a one-digit edit of the other side), plain vs plain and plain
    vs sympy's own LaTeX printing of the other side: an accept is always a true equality."""
    import random

    import sympy
    from sympy.parsing.sympy_parser import parse_expr

    rng = random.Random(30)
    x, y = sympy.symbols("x y")
    wrong, accepted = [], 0
    for k in range(150):
        a, b = _generated(rng, 2), _generated(rng, 2)
        if rng.random() < 0.5:
            b = a.replace("2", "3", 1) if "2" in a else a + "+1"
        if rng.random() < 0.3:
            b = a
        ea, eb = (parse_expr(t, local_dict={"E": sympy.E}) for t in (a, b))
        # odd k: plain vs plain; even k: vs sympy's LaTeX, which prints the natural log as \log
        gold = b if k % 2 else sympy.latex(eb).replace("\\log", "\\ln")
        if grade_answer(a, gold) != 1.0:
            continue
        accepted += 1
        gaps = [abs(complex((ea - eb).subs({x: px, y: py}).evalf())) for px, py in ((0.37, 1.9), (2.3, -0.6))]
        if any(gap > 1e-9 * (1 + abs(complex(ea.subs({x: 2.3, y: -0.6}).evalf()))) for gap in gaps):
            wrong.append((a, gold))
    assert accepted >= 30  # the check is not vacuous
    assert not wrong, wrong
