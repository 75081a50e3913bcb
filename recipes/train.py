"""Train a model with Dr. GRPO (or one of the paper's ablations) on a math dataset.

    accelerate launch [--config_file accelerate_configs/<x>.yaml] recipes/train.py \
        --config recipes/<model>/<experiment>.yaml [--any_field value ...]

A thin script over :mod:`trl_drgrpo.train` (``trl-drgrpo train`` runs the same).
"""

from trl_drgrpo.train import *  # noqa: F403  (tests and users import the script's helpers)
from trl_drgrpo.train import cli

if __name__ == "__main__":
    cli()
