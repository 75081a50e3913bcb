"""trl_drgrpo: Dr. GRPO ("GRPO done right") and the R1-Zero study's toolkit on top of TRL.

The trainer and configs import TRL and torch, so they are loaded on first use: importing
``trl_drgrpo.rewards.grader`` or ``trl_drgrpo.templates`` stays fast (grading workers import only those).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .templates import Template, available_templates, get_template, register_template

if TYPE_CHECKING:
    from .config import DrGRPOConfig, DrGRPOScriptArguments
    from .rewards.grader import grade
    from .rewards.math_reward import MathReward
    from .trainer import DrGRPOTrainer

__version__ = "0.1.0"

_LAZY = {
    "DrGRPOConfig": "config",
    "DrGRPOScriptArguments": "config",
    "DrGRPOTrainer": "trainer",
    "MathReward": "rewards.math_reward",
    "grade": "rewards.grader",
}

__all__ = [
    "DrGRPOConfig",
    "DrGRPOScriptArguments",
    "DrGRPOTrainer",
    "MathReward",
    "Template",
    "available_templates",
    "get_template",
    "grade",
    "register_template",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
