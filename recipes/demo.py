"""End-to-end Dr. GRPO demo on CPU (``make demo``): pretrain a tiny model, evaluate, train, evaluate, plot.

    python recipes/demo.py [--output_dir outputs/demo] [--rebuild] [--max_steps 30] [-- extra train.py args]

A thin script over :mod:`trl_drgrpo.demo.run` (``trl-drgrpo demo`` runs the same).
"""

import sys

from trl_drgrpo.cli import run

if __name__ == "__main__":
    sys.exit(run("demo", sys.argv[1:]))
