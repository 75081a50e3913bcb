"""Rule-based math reward: answer extraction and grading (``grader``), the killable process pool that bounds
it (``pool``) and the TRL reward function (``math_reward``)."""

from .grader import extract_answer, grade, grade_answer
from .math_reward import MathReward
from .pool import GradingPool

__all__ = ["GradingPool", "MathReward", "extract_answer", "grade", "grade_answer"]
