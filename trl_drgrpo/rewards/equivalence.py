"""The equivalence cascade: string, number, structure, symbolic, Math-Verify.

No stage looks at the clock: every bound is a property of the input (see :mod:`.symbolic`'s guards), so the
same pair gets the same verdict on any machine and under any load.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .extraction import gold_boxed
from .limits import MAX_ELEMENTS
from .normalization import has_percent, normalize_answer, prime_count, strip_lhs
from .numbers import Number, numbers_equal, parse_number
from .structures import _structure
from .symbolic import math_verify_equal, sympy_equal


def _unordered_match(preds: list[str], golds: list[str]) -> bool:
    remaining = list(golds)
    for p in preds:
        for i, g in enumerate(remaining):
            if _equiv_normalized(p, g):
                del remaining[i]
                break
        else:
            return False
    return not remaining


def _structured_equal(pred: str, gold: str) -> bool | None:
    """True/False when both sides are structured answers, None otherwise."""
    ps, gs = _structure(pred), _structure(gold)
    if ps is None and gs is None:
        return None
    if ps is None or gs is None:
        listed, other = (ps, gold) if gs is None else (gs, pred)
        if len(listed[1]) >= 2 and "," not in other and "=" not in other:
            return False  # several answers against one ("32, 349" is not 32349)
        # a one-element set vs. a bare value, a named answer: let other stages decide
        return None
    (pk, pe), (gk, ge) = ps, gs
    if len(ge) > MAX_ELEMENTS or len(pe) > MAX_ELEMENTS or not all(pe) or not all(ge):
        return False
    if pk == "set" and gk == "set":  # a list of answers: order does not count, repeats do
        return len(pe) == len(ge) and _unordered_match(pe, ge)
    if pk != gk or len(pe) != len(ge):
        return False
    return all(_equiv_normalized(p, g) for p, g in zip(pe, ge, strict=True))


def _equiv_normalized(pred: str, gold: str, allow_math_verify: bool = False) -> bool:
    if pred == gold:
        return True
    if not pred or not gold:
        return False
    if prime_count(pred) != prime_count(gold):
        return False  # E' is not E, f'(x) is not f(x)
    if re.fullmatch(r"[A-Za-z ]+", pred) and re.fullmatch(r"[A-Za-z ]+", gold) and len(gold) > 1:
        return pred.lower() == gold.lower()  # words ("Evelyn", "east") compare case-insensitively
    p_rhs, g_rhs = strip_lhs(pred), strip_lhs(gold)
    if (p_rhs is None) != (g_rhs is None) and not (pred.count("=") == 1 and gold.count("=") == 1):
        return _equiv_normalized(p_rhs or pred, g_rhs or gold, allow_math_verify)  # "x=5" vs "5"
    pb, gb = _BASE_RE.fullmatch(pred), _BASE_RE.fullmatch(gold)
    if pb or gb:  # numbers written in a base: 4343_6
        return bool(pb and gb) and _base_value(pb) == _base_value(gb) is not None
    pn, gn = parse_number(pred, normalized=True), parse_number(gold, normalized=True)
    if pn is not None and gn is not None:
        return numbers_equal(pn, gn)  # final: never let a looser checker overrule exact numbers
    structured = _structured_equal(pred, gold)
    if structured is not None:
        return structured
    if pred.count("=") == 1 and gold.count("=") == 1:  # two equations: the same up to rearrangement and scale
        (p_lhs, p_value), (g_lhs, g_value) = pred.split("=", 1), gold.split("=", 1)
        if p_lhs == g_lhs:  # one name given two values ("G=6.674*10^{-11}", "\\Delta=3"): the number rule
            pn, gn = parse_number(p_value, normalized=True), parse_number(g_value, normalized=True)
            if pn is not None and gn is not None:
                return numbers_equal(pn, gn)
        if sympy_equal(pred, gold):
            return True
        if p_rhs is None or g_rhs is None or pred.split("=", 1)[0] != gold.split("=", 1)[0]:
            return False
        return _equiv_normalized(p_rhs, g_rhs, allow_math_verify)
    symbolic = sympy_equal(pred, gold)
    if symbolic is not None:
        return symbolic
    if allow_math_verify:
        return math_verify_equal(pred, gold)
    return False


_BASE_RE = re.compile(r"([0-9A-Za-z]{1,64})_\{?(\d{1,2})\}?")


def _base_value(m: re.Match) -> int | None:
    base = int(m.group(2))
    try:
        return int(m.group(1), base) if 2 <= base <= 36 else None
    except ValueError:
        return None


def _gold_list(gold: Any) -> list[str]:
    items = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    out = []
    for g in items:
        if g is None:
            continue
        if isinstance(g, float):
            if not math.isfinite(g):
                continue
            g = str(int(g)) if g.is_integer() and abs(g) < 1e16 else repr(g)
        g = str(g).strip()
        if (
            "\\boxed" in g
        ):  # a gold written as a solution: its boxed answer(s) (the paper's grader takes them)
            g = gold_boxed(g) or g
        out.append(g)
    return [g for g in out if g]


def _percent_equal(pred: str, gold: str, p_norm: str, g_norm: str) -> bool:
    """``28\\%`` also means ``0.28``: a side written as a percentage matches the other side's value x 100."""
    p_pct, g_pct = has_percent(pred), has_percent(gold)
    if p_pct == g_pct:
        return False
    scaled, other = (p_norm, g_norm) if p_pct else (g_norm, p_norm)
    if not scaled or "," in scaled or "=" in scaled:
        return False
    percent, value = parse_number(scaled, normalized=True), parse_number(other, normalized=True)
    if percent is not None and value is not None:  # two numbers: the number rule on percent / 100
        d = percent.decimal
        fraction = Number(percent.value / 100, None if d is None else d.scaleb(-2))
        return numbers_equal(value, fraction) if p_pct else numbers_equal(fraction, value)
    as_fraction = f"({scaled})/100"
    return _equiv_normalized(other, as_fraction) if p_pct else _equiv_normalized(as_fraction, other)


def is_equiv(pred: str, gold: Any) -> bool:
    """Whether the extracted answer ``pred`` equals ``gold`` (a str, number or list of acceptable answers)."""
    p = normalize_answer(pred)
    for g in _gold_list(gold):
        gn = normalize_answer(g)
        if _equiv_normalized(p, gn, allow_math_verify=True) or _percent_equal(pred, g, p, gn):
            return True
    return False
