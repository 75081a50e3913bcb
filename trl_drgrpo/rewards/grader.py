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

import enum
import logging
from collections.abc import Callable, Sequence
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
    "Outcome",
    "call_with_outcome",
    "grade_answer_outcome",
    "grade_outcome",
    "warm",
    "extract_answer",
    "grade",
    "grade_answer",
    "grade_many",
    "is_equiv",
    "normalize_answer",
    "parse_number",
]


class Outcome(str, enum.Enum):
    """How an item's score came about; the score is the same (0.0) for all but ``GRADED``, the outcome tells them
    apart (tests and monitoring: a crash or a kill must never pass for an honest 0)."""

    GRADED = "graded"  # the grader ran to the end: the score is its verdict
    NO_ANSWER = "no_answer"  # nothing to grade (no extractable answer): 0
    RAISED = "raised"  # the grader raised; the catch-all scored it 0
    TIMED_OUT = "timed_out"  # killed at the pool's hard timeout: 0
    DIED = "died"  # its worker process died: 0

    @property
    def killed(self) -> bool:
        return self in (Outcome.TIMED_OUT, Outcome.DIED)


def grade(
    response: str, gold: Any, template: str | Template = "qwen_math", answer_format: str = "paper"
) -> float:
    """1.0 if the answer extracted from ``response`` equals ``gold`` (any of them, for a list), else 0.0.

    Never raises on bad responses or golds; bounded by the structure of its inputs, never by the clock.
    """
    return grade_outcome(response, gold, template, answer_format)[0]


def grade_outcome(
    response: str, gold: Any, template: str | Template = "qwen_math", answer_format: str = "paper"
) -> tuple[float, Outcome]:
    """:func:`grade` and how its score came about (``GRADED``, ``NO_ANSWER`` or ``RAISED``)."""
    try:
        answer = extract_answer(response, template, answer_format)
    except Exception:
        logger.debug("extraction failed", exc_info=True)
        return 0.0, Outcome.RAISED
    return grade_answer_outcome(answer, gold)


def grade_answer(answer: str | None, gold: Any) -> float:
    """Grade an already extracted answer (what the reward workers run)."""
    return grade_answer_outcome(answer, gold)[0]


def grade_answer_outcome(answer: str | None, gold: Any) -> tuple[float, Outcome]:
    """:func:`grade_answer` and how its score came about (``GRADED``, ``NO_ANSWER`` or ``RAISED``)."""
    if answer is None:
        return 0.0, Outcome.NO_ANSWER
    try:
        return (1.0 if is_equiv(answer, gold) else 0.0), Outcome.GRADED
    except Exception:
        logger.debug("grading failed", exc_info=True)
        return 0.0, Outcome.RAISED


def call_with_outcome(fn: Callable[[str, Any], float], answer: str, gold: Any) -> tuple[float, Outcome]:
    """Score of a grade function and its outcome: :func:`grade_answer`'s own, else ``RAISED`` where ``fn`` raised."""
    if fn is grade_answer:
        return grade_answer_outcome(answer, gold)
    try:
        return float(fn(answer, gold)), Outcome.GRADED
    except Exception:
        return 0.0, Outcome.RAISED


def grade_many(answers: Sequence[str | None], golds: Sequence[Any]) -> list[float]:
    """Grade extracted answers against golds in-process (no hard timeout)."""
    return [grade_answer(a, g) for a, g in zip(answers, golds, strict=True)]
