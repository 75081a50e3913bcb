"""Math answer extraction and grading (rule-based reward of the paper): the public entry points.

``extract_answer`` (:mod:`.extraction`) pulls the final answer out of a response by the template's format, under
the paper's rules (``answer_format="paper"``, default) or leniently; ``grade`` compares it to the gold answer(s)
with a cascade of increasingly expensive checks (:mod:`.equivalence`):

1. normalized string match (:mod:`.normalization`: LaTeX spacing, ``\\left``/``\\right``, ``\\dfrac``, text and
   font wrappers, units, degrees, percent words, thousands separators, "and"-lists, matrix environments);
2. exact numbers (:mod:`.numbers`), with a relative tolerance only for inexact values;
3. element-wise comparison of tuples, intervals, sets, lists and matrices;
4. symbolic equality with sympy (:mod:`.symbolic`), equations up to a nonzero factor, ``i`` as the imaginary
   unit where the gold is complex;
5. Math-Verify as a last resort, only when our own parsers could not read one side.

No stage reads the clock: the work is bounded by the input's structure (size, nesting, exponents, digits), decided
before sympy runs, so a verdict is the same on any machine and under any load. The hard wall-clock kill lives in
:class:`~trl_drgrpo.rewards.pool.GradingPool`, the last resort for anything the bounds missed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..templates import Template
from .equivalence import is_equiv
from .extraction import ANSWER_FORMATS, extract_answer
from .normalization import normalize_answer
from .numbers import parse_number
from .symbolic import warm

logger = logging.getLogger(__name__)

__all__ = [
    "ANSWER_FORMATS",
    "warm",
    "extract_answer",
    "grade",
    "grade_answer",
    "grade_many",
    "is_equiv",
    "normalize_answer",
    "parse_number",
]


def grade(
    response: str, gold: Any, template: str | Template = "qwen_math", answer_format: str = "paper"
) -> float:
    """1.0 if the answer extracted from ``response`` equals ``gold`` (any of them, for a list), else 0.0.

    Never raises on bad responses or golds; bounded by the structure of its inputs, never by the clock.
    """
    answer = extract_answer(response, template, answer_format)
    if answer is None:
        return 0.0
    return grade_answer(answer, gold)


def grade_answer(answer: str | None, gold: Any) -> float:
    """Grade an already extracted answer (what the reward workers run)."""
    if answer is None:
        return 0.0
    try:
        return 1.0 if is_equiv(answer, gold) else 0.0
    except Exception:
        logger.debug("grading failed", exc_info=True)
        return 0.0


def grade_many(answers: Sequence[str | None], golds: Sequence[Any]) -> list[float]:
    """Grade extracted answers against golds in-process (no hard timeout)."""
    return [grade_answer(a, g) for a, g in zip(answers, golds, strict=True)]
