"""Tests of answer extraction and the equivalence cascade in trl_drgrpo.rewards.grader."""

from __future__ import annotations

import random
import re

import pytest

from trl_drgrpo.rewards.grader import (
    Outcome,
    extract_answer,
    grade,
    grade_outcome,
    normalize_answer,
    parse_number,
)
from trl_drgrpo.templates import get_template


def boxed(answer: str) -> str:
    return f"Let me think step by step. The computation gives the result.\nSo the answer is $\\boxed{{{answer}}}$."


def r1(answer: str, sep: str = " ") -> str:
    return f" I add the numbers and check. </think>{sep}<answer> {answer} </answer>"


# ---------------------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "paper", "lenient"),
    [
        (r"so \boxed{5}", "5", "5"),
        (r"\boxed{\frac{1}{2}} and then \boxed{\frac{3}{4}}", r"\frac{3}{4}", r"\frac{3}{4}"),
        (
            r"\boxed{\left( 3, \frac{\pi}{2} \right)}",
            r"\left( 3, \frac{\pi}{2} \right)",
            r"\left( 3, \frac{\pi}{2} \right)",
        ),
        (r"the answer is \boxed 5.", None, "5."),  # the paper needs "\boxed{"
        (r"final: \fbox{42}", None, "42"),  # the paper reads \boxed only
        (r"\boxed{7} then \boxed 8", None, "8"),  # the paper's last "\boxed" is not "\boxed{": no answer
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}", r"\{1, 2\}"),
        (r"no box here: 12", None, None),
        (r"truncated \boxed{12", None, None),
        (r"\boxed{}", None, None),
    ],
)
def test_extract_boxed(response, paper, lenient):
    for template in ("qwen_math", get_template("no")):
        assert extract_answer(response, template) == paper
        assert extract_answer(response, template, answer_format="paper") == paper
        assert extract_answer(response, template, answer_format="lenient") == lenient


@pytest.mark.parametrize(
    ("response", "paper", "lenient"),
    [
        (r1("7"), "7", "7"),
        (r1("7", sep="\n"), None, "7"),  # the paper needs the literal "</think> <answer>"
        (r1("7", sep="\n\n"), None, "7"),
        (r1("7", sep=""), None, "7"),
        (r1("7", sep="  "), None, "7"),
        (r1(r"\boxed{\frac{1}{3}}"), r"\frac{1}{3}", r"\frac{1}{3}"),
        (r1(r"\boxed 3"), None, "3"),
        (" reasoning <answer> 7 </answer>", None, None),  # no </think>
        (" reasoning </think> <answer> 7", None, None),  # no </answer>
        (" reasoning </think> more text <answer> 7 </answer>", None, None),  # answer not right after </think>
        (r" reasoning \boxed{7} </think>", None, None),  # a box alone is not the r1 format
        # the paper takes the text after the LAST <answer> and removes every </answer>
        (
            " a </think> <answer> 6 </answer> b <answer> 7 </answer>",
            "7",
            None,
        ),  # lenient: after </think> only
        (" a </think> <answer> 6 </answer> trailing", "6  trailing", "6"),
    ],
)
def test_extract_r1(response, paper, lenient):
    assert extract_answer(response, "r1") == paper
    assert extract_answer(response, "r1", answer_format="lenient") == lenient


def test_r1_grading_follows_strict_format():
    assert grade(r1("12"), "12", "r1") == 1.0
    assert grade(r1(r"\boxed{12}"), "12", "r1") == 1.0
    assert grade(r1("12", sep="\n"), "12", "r1") == 0.0
    assert grade(r1("12", sep="\n"), "12", "r1", answer_format="lenient") == 1.0
    assert grade(" 12 is it <answer>12</answer>", "12", "r1") == 0.0
    assert grade(boxed("12"), "12", "r1") == 0.0


def test_unknown_answer_format_is_a_clear_error():
    with pytest.raises(ValueError, match="answer_format must be one of"):
        extract_answer(boxed("1"), "qwen_math", answer_format="loose")


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown template"):
        extract_answer(boxed("1"), "nope")


# ---------------------------------------------------------------------------------------------------------------
# Equivalences (each family) and non-equivalences
# ---------------------------------------------------------------------------------------------------------------

EQUIVALENT = {
    "spaces": [("3, 5, 7", "3,5,7"), (r"x^5 - x^4 + x", "x^5-x^4+x")],
    "left_right": [(r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)")],
    "dfrac_tfrac": [
        (r"\frac{17}{50}", r"\dfrac{17}{50}"),
        (r"\tfrac{1}{2}", r"\frac{1}{2}"),
        ("4/3", r"\frac43"),
    ],
    "text": [("Evelyn", r"\text{Evelyn}"), ("C", r"\text{(C)}"), ("even", r"\text{even}")],
    "units": [("5.4", r"5.4 \text{ cents}"), ("864", r"864 \mbox{ inches}^2"), ("15", r"15\mbox{ cm}^2")],
    "degrees": [
        ("90", r"90^\circ"),
        (r"41.8^{\circ}", "41.8"),
        (r"\frac{270}{7}", r"\frac{270}7\text{ degrees}"),
    ],
    "thousands": [("1,000", "1000"), ("10080", r"10,\!080"), ("11111111100", r"11,\! 111,\! 111,\! 100")],
    "leading_zeros": [("33", "033"), ("025", "25")],
    "x_prefix": [
        ("x = 5", "5"),
        ("5", "x=5"),
        ("2x", r"$f(x)=2 x$"),
        ("2x + 3", "y = 2x + 3"),
        ("4, 5", "AB=4,CD=5"),
    ],
    "trailing_period": [("5.", "5"), (r"(-\infty, 0) \cup \{1\}", r"$(-\infty, 0) \cup\{1\}$.")],
    "spacing_macros": [("32348", r"\$32,\!348"), (r"1\,000", "1000"), (r"2 \! \cdot \! 3", r"2\cdot3")],
    "dollar_wrappers": [(r"\frac{25}{2}", r"$\frac{25}{2}$"), ("$1003$", "1003")],
    "fractions": [
        (r"\frac{6}{4}", r"\frac{3}{2}"),
        ("-3/2", r"-\frac{3}{2}"),
        (r"\frac{9}{5}", r"1\frac{4}{5}"),
    ],
    "decimal_vs_fraction": [("0.5", r"\frac{1}{2}"), ("1.25", r"\frac{5}{4}"), (".35625", r"\frac{57}{160}")],
    "scientific": [
        ("2.6e-27", r"2.6 \times 10^{-27}"),
        (r"4.4 \times 10^7", "4.4e7"),
        ("0.001", r"10^{-3}"),
        (r"4.5 \times 10^{33}", "4.5e33\n"),
    ],
    "integer_as_float": [("142", 142.0), ("142.0", "142")],
    "relative_tolerance": [(r"2.778 \times 10^{-6}", r"2.7778 \times 10^{-6}"), ("0.33333", r"\frac{1}{3}")],
    "symbolic_forms": [
        ("ab + 2a + 5b + 10", "(a+5)(b+2)"),
        ("x^2+2x+1", "(x+1)^2"),
        (r"\boxed{1+x}", "x+1"),
        ("sqrt(3)/2", r"\frac{\sqrt{3}}{2}"),
        (r"\sqrt{117}", r"3\sqrt{13}"),
        (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}"),
        (r"\frac{c}{\sqrt{2}}", r"\frac{1}{\sqrt{2}}c"),
        (r"2\sqrt{2}+10", r"10+2 \sqrt{2}"),
        ("0.8660", r"\frac{\sqrt{3}}{2}"),
        (r"\left( x^8 + x^7 + x + 1 \right)", "x^8+x^7+x+1"),
        (r"\omega^{2}+s^{2}", r"s^{2}+\omega^{2}"),
        (r"2\pi r^2", r"2 r^2 \pi"),
    ],
    "tuples_sets": [
        ("(6, 31, -1)", "(6,31,-1)"),
        ("-2, 1", "1,-2"),
        (r"\{1, 2\}", "2,1"),
        ("(3, 4]", "(3,4]"),
        (r"(1, \frac{1}{2})", "(1, 0.5)"),
        (r"\begin{pmatrix} -\frac13 \\ \frac23 \end{pmatrix}", r"\begin{pmatrix} -1/3 \\ 2/3 \end{pmatrix}"),
    ],
    "comparisons": [(r"k\ge 2", r"$k \geqslant 2$")],
    "bases": [("4343_{6}", "4343_6"), ("10_2", "2_{10}")],
}

NOT_EQUIVALENT = {
    "off_by_one": [("34", "33"), ("142", 143.0), ("1001", "1,000")],
    "sign_flip": [("-5", "5"), (r"-\frac{\pi}{6}", r"\frac{\pi}{6}"), ("1-12i", "1 + 12i")],
    "inverted_fraction": [(r"\frac{2}{1}", r"\frac{1}{2}"), (r"\frac{4}{3}", "0.75")],
    "relative_scale": [("2.6e-27", "1.3e-27"), ("1.3e-27", r"2.6 \times 10^{-27}"), ("1e-30", "0")],
    "integer_gold_exact": [("142.01", 142.0), ("99.99", "100")],
    "decimal_precision": [(r"4.4678 \times 10^{14}", r"4.4677 \times 10^{14}"), ("3", r"2.7778")],
    "misread_by_parsers": [
        (r"m_{p} c^{2}(\gamma^{2}-2) \sin ^{2} \theta", r"m_{p} c^{2}(\gamma^{2}-1) \sin ^{2} \theta"),
        (r"2\pi r^3", r"2 r^2 \pi"),
        (r"\frac{" + "9" * 60 + "}{7}", r"\frac{" + "9" * 60 + "}{7}+1"),  # equal as floats, not exactly
        (r"2^{1009}+1", r"2^{1009}"),
    ],
    "symbolic": [("x^2+2x", "(x+1)^2"), (r"\sqrt{x^2}", "x"), ("R^2", "3R^2"), ("r", "R"), ("2n", "2")],
    "structure": [("(1,2)", "(2,1)"), ("[3,4]", "(3,4]"), ("1", "1,-2"), ("1, 2, 2", "1, 2")],
    "irrational_vs_rounded": [(r"\sqrt{2}", "1.41"), ("3.14", r"\pi")],
    "words": [("east", r"\text{west}")],
    "bases": [("4343_7", "4343_6"), ("4343", "4343_6"), ("1011_2", "1011")],
}


@pytest.mark.parametrize(
    ("family", "pred", "gold"), [(f, p, g) for f, cases in EQUIVALENT.items() for p, g in cases]
)
def test_equivalent(family, pred, gold):
    assert grade(boxed(pred), gold) == 1.0, (family, normalize_answer(pred), normalize_answer(str(gold)))


@pytest.mark.parametrize(
    ("family", "pred", "gold"), [(f, p, g) for f, cases in NOT_EQUIVALENT.items() for p, g in cases]
)
def test_not_equivalent(family, pred, gold):
    assert grade(boxed(pred), gold) == 0.0, family


def test_last_box_counts():
    assert grade(r"first \boxed{12} then I correct myself: \boxed{13}", "12") == 0.0
    assert grade(r"first \boxed{13} then I correct myself: \boxed{12}", "12") == 1.0


def test_unboxed_and_truncated_answers_score_zero():
    assert grade("The answer is 12.", "12") == 0.0
    assert grade(r"The answer is \boxed{12", "12") == 0.0


@pytest.mark.parametrize(
    ("golds", "pred", "expected"),
    [
        (["0.01\n", "0.02\n"], "0.02", 1.0),
        (["0.01\n", "0.02\n"], "0.03", 0.0),
        (("6630.65\n", "6630\n"), "6630", 1.0),
        (["$\\frac{1}{2 n+2}$"], r"\frac{1}{2(n+1)}", 1.0),
        (["$69$,$84$"], "69, 84", 1.0),
        ([], "1", 0.0),
        (142.0, "142", 1.0),
        (7, "7", 1.0),
        (float("nan"), "7", 0.0),
        (None, "7", 0.0),
    ],
)
def test_gold_kinds(golds, pred, expected):
    assert grade(boxed(pred), golds) == expected


def test_parse_number():
    assert parse_number("1,000").value == 1000
    assert parse_number(r"2.6 \times 10^{-27}").value * 10**27 == pytest.approx(2.6)
    assert parse_number(r"-\frac{3}{4}").value == -0.75
    assert parse_number("x+1") is None
    assert parse_number("9" * 20_000) is None  # refused, not converted


# ---------------------------------------------------------------------------------------------------------------
# Pathological inputs: a score within the time bound, never an exception
# ---------------------------------------------------------------------------------------------------------------

PATHOLOGICAL = {
    "power_tower_pred": (boxed("2^{2^{2^{2^{2^{2}}}}}"), "4"),
    "power_tower_both": (boxed("2^{2^{2^{2^{2^{2}}}}}"), "2^{2^{2^{2^{2^{3}}}}}"),
    "huge_exponent": (boxed("2^{99999999}"), "2^{99999999}+1"),
    "digits_20000": (boxed("9" * 20_000), "9" * 20_000 + "8"),
    "gold_digits_20000": (boxed("1"), "1" + "0" * 20_000),
    "nested_braces": (boxed("{" * 5_000 + "1" + "}" * 5_000), "1"),
    "unclosed_braces": (r"\boxed{" + "{" * 5_000 + "1", "1"),
    "unbalanced_inside": (boxed("(((1]]"), "1"),
    "nul_bytes": ("\x00" * 1_000 + boxed("1\x00"), "2\x00"),
    "long_response": ("word " * 40_000 + boxed("x"), "y"),
    "many_boxes": (boxed("1") * 5_000, "2"),
    "big_factorial": (boxed("(10^{100})!"), "(10^{100})!+1"),
    "factorial_100000": (boxed("100000!"), "100000!-1"),
    "big_polynomial": (boxed("(x+y+z)^{200}"), "(x+y+z)^{201}"),
    "long_product": (boxed("(a+b+c)" * 40), "(a+b+c)" * 39),
    "big_integer_power": (boxed("9999^{5000}"), "9999^{4999}"),
    "integral": (boxed(r"\int_0^{10^{9}} e^{x^2} dx"), "1"),
    "exp_tower": (boxed(r"\exp(\exp(\exp(100)))"), r"\exp(\exp(\exp(100)))+1"),
    "power_of_powers": (boxed(r"((10^{4000})^{4000})^{4000}"), "1"),
    "huge_binomial": (boxed(r"\binom{10^{100}}{10^{50}}"), r"\binom{10^{100}}{10^{50}}+1"),
    "cosh_tower": (boxed(r"\cosh(\cosh(\cosh(50)))"), "1"),
    "not_a_string": (None, "1"),
}


# refused before grading: an answer over MAX_ANSWER_CHARS, an unclosed box, a response that is not a string
NO_ANSWER = {"digits_20000", "nested_braces", "unclosed_braces", "not_a_string"}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_inputs_are_bounded(name):
    """A 0 that the grader reached (or a refused answer), not the catch-all's 0 after a crash; bounded by the
    input's structure (timings: benchmarks/grader_agreement.py; kills: tests/test_rewards.py)."""
    response, gold = PATHOLOGICAL[name]
    expected = Outcome.NO_ANSWER if name in NO_ANSWER else Outcome.GRADED
    assert grade_outcome(response, gold) == (0.0, expected)
    assert grade(response, gold) == 0.0


def test_a_crash_is_told_from_a_graded_zero(monkeypatch):
    import trl_drgrpo.rewards.grader as grader_module

    def broken(answer, gold):
        raise RecursionError("a parser that blew up")

    assert grade_outcome(boxed("2"), "1") == (0.0, Outcome.GRADED)
    monkeypatch.setattr(grader_module, "is_equiv", broken)
    assert grade_outcome(boxed("2"), "1") == (0.0, Outcome.RAISED)
    assert grade(boxed("2"), "1") == 0.0  # the reward value is unchanged: only the outcome tells


def test_pathological_but_correct_answers_still_pass():
    assert grade("x" * 200_000 + boxed("42"), "42") == 1.0
    assert grade(boxed("1") * 5_000, "1") == 1.0
    assert grade("\x00" * 1_000 + boxed("1\x00"), "1") == 1.0
    assert grade(boxed("2^{1009}"), "$2^{1009}$") == 1.0
    assert grade(boxed(r"\frac{100!}{2^{50}}"), r"$\frac{100!}{2^{50}}$") == 1.0


def test_random_garbage_never_raises():
    rng = random.Random(0)
    alphabet = list("0123456789{}()[]^_\\!,.=+-*/ xyzabc$") + [
        "\\frac",
        "\\sqrt",
        "\\boxed{",
        "\\left",
        "e",
        "!",
    ]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        assert grade(text + "}", text) in (0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Golds of the real evaluation suite
# ---------------------------------------------------------------------------------------------------------------


def _perturb(gold: str) -> str | None:
    """A provably different answer: bump the last integer of the answer (or its only one)."""
    numbers = list(re.finditer(r"\d+", gold))
    if not numbers:
        return None
    m = numbers[-1]
    return gold[: m.start()] + str(int(m.group()) + 1) + gold[m.end() :]


@pytest.mark.parametrize("split", ["aime", "amc", "math", "minerva", "olympiad_bench"])
def test_suite_golds_grade_themselves(eval_suite_path, split):
    from datasets import load_from_disk

    rows = load_from_disk(str(eval_suite_path))[split]
    rng = random.Random(split)
    indices = rng.sample(range(len(rows)), min(25, len(rows)))
    for i in indices:
        gold = rows[i]["answer"]
        first = gold[0] if isinstance(gold, list) else gold
        text = str(int(first)) if isinstance(first, float) else str(first).strip().strip("$").strip()
        assert grade(boxed(text), gold) == 1.0, (split, gold)
        wrong = _perturb(text)
        if wrong is not None and not re.search(r"\d{50,}", wrong):
            assert grade(boxed(wrong), gold) == 0.0, (split, gold, wrong)
