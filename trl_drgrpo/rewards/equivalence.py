"""The equivalence cascade: string, number, structure, symbolic, Math-Verify."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from .limits import DEFAULT_TIME_BUDGET_S, MAX_ELEMENTS
from .normalization import normalize_answer
from .numbers import numbers_equal, parse_number
from .structures import _structure
from .symbolic import _math_verify_equal, _sympy_equal


def _unordered_match(preds: list[str], golds: list[str], deadline: float) -> bool:
    remaining = list(golds)
    for p in preds:
        for i, g in enumerate(remaining):
            if _equiv_normalized(p, g, deadline):
                del remaining[i]
                break
        else:
            return False
    return not remaining


def _structured_equal(pred: str, gold: str, deadline: float) -> bool | None:
    """True/False when both sides are structured answers, None otherwise."""
    ps, gs = _structure(pred), _structure(gold)
    if ps is None and gs is None:
        return None
    if ps is None or gs is None:
        # "x \in [-2,7]" style or a one-element set vs. a bare value: let other stages decide
        return None
    (pk, pe), (gk, ge) = ps, gs
    if len(pe) != len(ge) or len(ge) > MAX_ELEMENTS or not all(pe) or not all(ge):
        return False
    if pk == "set" and gk == "set":
        return _unordered_match(pe, ge, deadline)
    if pk != gk:
        return False
    return all(_equiv_normalized(p, g, deadline) for p, g in zip(pe, ge, strict=True))


def _equiv_normalized(pred: str, gold: str, deadline: float, allow_math_verify: bool = False) -> bool:
    if pred == gold:
        return True
    if not pred or not gold:
        return False
    if re.fullmatch(r"[A-Za-z ]+", pred) and re.fullmatch(r"[A-Za-z ]+", gold) and len(gold) > 1:
        return pred.lower() == gold.lower()  # words ("Evelyn", "east") compare case-insensitively
    pb, gb = _BASE_RE.fullmatch(pred), _BASE_RE.fullmatch(gold)
    if pb or gb:  # numbers written in a base: 4343_6
        return bool(pb and gb) and _base_value(pb) == _base_value(gb) is not None
    pn, gn = parse_number(pred, normalized=True), parse_number(gold, normalized=True)
    if pn is not None and gn is not None:
        return numbers_equal(pn, gn)  # final: never let a looser checker overrule exact numbers
    structured = _structured_equal(pred, gold, deadline)
    if structured is not None:
        return structured
    if time.monotonic() > deadline:
        return False
    symbolic = _sympy_equal(pred, gold, deadline)
    if symbolic is not None:
        return symbolic
    if allow_math_verify and time.monotonic() <= deadline:
        return _math_verify_equal(pred, gold)
    return False


_BASE_RE = re.compile(r"([0-9A-Za-z]{1,64})_\{?(\d{1,2})\}?")


def _base_value(m: re.Match) -> int | None:
    base = int(m.group(2))
    try:
        return int(m.group(1), base) if 2 <= base <= 36 else None
    except ValueError:
        return None


def _gold_list(gold: Any) -> list[str]:
    if isinstance(gold, (list, tuple)):
        items = list(gold)
    else:
        items = [gold]
    out = []
    for g in items:
        if g is None:
            continue
        if isinstance(g, float):
            if not math.isfinite(g):
                continue
            g = str(int(g)) if g.is_integer() and abs(g) < 1e16 else repr(g)
        out.append(str(g).strip())
    return [g for g in out if g]


def is_equiv(pred: str, gold: Any, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> bool:
    """Whether the extracted answer ``pred`` equals ``gold`` (a str, number or list of acceptable answers)."""
    deadline = time.monotonic() + time_budget_s
    p = normalize_answer(pred)
    for g in _gold_list(gold):
        if _equiv_normalized(p, normalize_answer(g), deadline, allow_math_verify=True):
            return True
    return False
