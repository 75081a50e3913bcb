"""Rule-based math reward: answer extraction and grading (``grader`` and its modules), the killable process pool
that bounds it (``pool``), the TRL reward function (``math_reward``) and rewards by name (``registry``)."""

from .grader import ANSWER_FORMATS, Outcome, extract_answer, grade, grade_answer, grade_outcome
from .math_reward import MathReward
from .pool import GradingPool
from .registry import available_rewards, build_reward, get_grade_fn, math_verify_grade, register_reward

__all__ = [
    "ANSWER_FORMATS",
    "GradingPool",
    "MathReward",
    "Outcome",
    "available_rewards",
    "build_reward",
    "extract_answer",
    "get_grade_fn",
    "grade",
    "grade_answer",
    "grade_outcome",
    "math_verify_grade",
    "register_reward",
]
