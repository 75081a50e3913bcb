"""Rewards by name: ``math`` (this project's grader) and ``math_verify`` (plain Math-Verify), both extracted by
the template's answer format and graded in the killable pool; users add their own grading functions.

A grading function takes ``(answer, gold)`` -- the answer extracted from the response by the template's rules and
the dataset's gold -- and returns a float. It runs in the grading processes, so it must be picklable (defined at
module level). In a recipe, ``reward: math_verify`` picks a registered name and ``reward: my_pkg.rewards:grade``
imports a function by path.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from ..templates import Template
from .grader import grade_answer
from .math_reward import MathReward

GradeFn = Callable[[str, Any], float]

_REGISTRY: dict[str, GradeFn] = {}


def math_verify_grade(answer: str, gold: Any) -> float:
    """Plain Math-Verify: ``parse`` both sides with default settings and ``verify``; any listed gold may match."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    golds = gold if isinstance(gold, (list, tuple)) else [gold]
    try:
        pred = parse(f"${answer}$" if "$" not in answer else answer, parsing_timeout=None)
        for g in golds:
            g = str(int(g)) if isinstance(g, float) and g.is_integer() else str(g).strip()
            if verify(parse(g if "$" in g else f"${g}$", parsing_timeout=None), pred, timeout_seconds=None):
                return 1.0
    except Exception:
        return 0.0
    return 0.0


def register_reward(name: str, grade_fn: GradeFn, overwrite: bool = False) -> None:
    """Make ``grade_fn`` (a picklable ``(answer, gold) -> float``) available as ``reward=name``."""
    if not callable(grade_fn):
        raise TypeError(f"reward {name!r}: grade_fn must be callable, got {type(grade_fn).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"reward {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = grade_fn


def available_rewards() -> list[str]:
    return sorted(_REGISTRY)


def get_grade_fn(name: str) -> GradeFn:
    """The grading function registered as ``name``, or imported from ``"module.path:function"``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"reward {name!r}: cannot import it ({exc})") from None
        if not callable(fn):
            raise ValueError(f"reward {name!r} is not callable")
        return fn
    raise ValueError(
        f"unknown reward {name!r}; registered: {available_rewards()} (or 'module.path:function')"
    )


def build_reward(
    name: str = "math",
    template: str | Template = "qwen_math",
    answer_format: str = "paper",
    answer_column: str = "answer",
    timeout_s: float = 5.0,
    num_workers: int = 2,
) -> MathReward:
    """A TRL reward function for the reward called ``name`` (logged under ``<name>_reward``)."""
    fn = get_grade_fn(name)
    return MathReward(
        template=template,
        answer_column=answer_column,
        answer_format=answer_format,
        timeout_s=timeout_s,
        num_workers=num_workers,
        grade_fn=None if fn is grade_answer else fn,
        name="math_reward" if name == "math" else f"{name.rsplit(':', 1)[-1]}_reward",
    )


register_reward("math", grade_answer)
register_reward("math_verify", math_verify_grade)
