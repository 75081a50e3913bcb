"""``recipes/train.py`` with a per-row key that ``gradient_tokens_only`` cannot slice, on process 1 only.

TRL adds keys such as ``pixel_values`` only on the processes whose batch has images; a micro-batch with such a key
is trained whole (TRL's path). This script reproduces that split on a text workload: every process must take the
same path, or their collectives pair wrongly (a hang or garbage).
"""

from __future__ import annotations

import sys

import torch

from trl_drgrpo.trainer import DrGRPOTrainer

ODD_KEY = "odd_key"  # unknown to TRL (its loss ignores it) and to trl_drgrpo.training.batching

_score = DrGRPOTrainer._generate_and_score_completions


def _with_odd_key(self, inputs):
    output = _score(self, inputs)
    if self.accelerator.process_index == 1:
        output[ODD_KEY] = torch.zeros(output["completion_ids"].size(0), device=output["advantages"].device)
    return output


if __name__ == "__main__":
    DrGRPOTrainer._generate_and_score_completions = _with_odd_key
    from trl_drgrpo.cli import run

    sys.exit(run("train", sys.argv[1:]))
