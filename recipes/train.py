"""Train a model with Dr. GRPO (or one of the paper's ablations) on a math dataset.

    accelerate launch [--config_file accelerate_configs/<x>.yaml] recipes/train.py \
        --config recipes/<model>/<experiment>.yaml [--any_field value ...]

A thin script over :mod:`trl_drgrpo.train` (``trl-drgrpo train`` runs the same): the recipe and its trackers
are checked before anything heavy is imported, and a user error prints one line.
"""

import sys

if __name__ == "__main__":
    from trl_drgrpo.cli import run

    sys.exit(run("train", sys.argv[1:]))

from trl_drgrpo.train import *  # noqa: E402, F403  (tests and users import the script's helpers)
