"""Evaluate a model on the paper's five benchmarks, or merge several result summaries.

    python recipes/evaluate.py --model Qwen/Qwen2.5-Math-1.5B --template qwen_math --output_dir results/qwen_math

A thin script over :mod:`trl_drgrpo.evaluate` (``trl-drgrpo evaluate`` runs the same; a user error prints
one line).
"""

import sys

if __name__ == "__main__":
    from trl_drgrpo.cli import run

    sys.exit(run("evaluate", sys.argv[1:]))

from trl_drgrpo.evaluate import *  # noqa: E402, F403
