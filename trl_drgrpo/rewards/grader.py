"""Math answer extraction and grading (rule-based reward of the paper).

``extract_answer`` pulls the final answer out of a response according to the template's answer format, and
``grade`` compares it to the gold answer(s) with a cascade of increasingly expensive checks:

1. normalized string match (LaTeX spacing, ``\\left``/``\\right``, ``\\dfrac``, ``\\text{}``, units, degrees,
   thousands separators, ``x =`` prefixes, ``$`` wrappers, ...);
2. exact numbers (``Fraction``: integers, decimals, fractions, mixed numbers, scientific notation), with a
   relative tolerance only for inexact values;
3. element-wise comparison of tuples, intervals, sets, lists and matrices;
4. symbolic equality with sympy (through ``latex2sympy2_extended``);
5. Math-Verify as a last resort, only when our own parsers could not read one side.

Every stage is bounded: the scanned response, the candidate answer and the expressions handed to sympy are
capped in size, and expressions that could blow up (power towers, huge exponents, factorials of big numbers,
huge digit strings) are refused before any symbolic work. Wrong answers must never score 1, so every doubt
resolves to 0. The hard wall-clock guarantee lives in :mod:`trl_drgrpo.rewards` (a process pool).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..templates import Template
from .equivalence import is_equiv
from .extraction import extract_answer
from .limits import DEFAULT_TIME_BUDGET_S
from .normalization import normalize_answer
from .numbers import parse_number

logger = logging.getLogger(__name__)

__all__ = [
    "extract_answer",
    "grade",
    "grade_answer",
    "grade_many",
    "is_equiv",
    "normalize_answer",
    "parse_number",
]


def grade(response: str, gold: Any, template: str | Template = "qwen_math") -> float:
    """1.0 if the answer extracted from ``response`` equals ``gold`` (any of them, for a list), else 0.0.

    Never raises on bad responses or golds; bounded in time by input guards and a soft deadline.
    """
    answer = extract_answer(response, template)
    if answer is None:
        return 0.0
    return grade_answer(answer, gold)


def grade_answer(answer: str | None, gold: Any, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> float:
    """Grade an already extracted answer (what the reward workers run)."""
    if answer is None:
        return 0.0
    try:
        return 1.0 if is_equiv(answer, gold, time_budget_s) else 0.0
    except Exception:
        logger.debug("grading failed", exc_info=True)
        return 0.0


def grade_many(answers: Sequence[str | None], golds: Sequence[Any]) -> list[float]:
    """Grade extracted answers against golds in-process (no hard timeout)."""
    return [grade_answer(a, g) for a, g in zip(answers, golds, strict=True)]
