"""Run the training script for one step and report how many trainable weights the step changed.

    accelerate launch --config_file <cfg> tests/distributed/master_weights_probe.py <result.json> --config ...

"Weights" are the master copy the optimizer updates: DeepSpeed's fp32 partitions where DeepSpeed keeps them
(read with ``deepspeed.utils.safe_get_full_fp32_param``), else the parameters themselves. The probe rides on
``trl_drgrpo.train`` unchanged, appended to the callbacks it builds.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from transformers import TrainerCallback

import trl_drgrpo.train as train


class MasterWeightsProbe(TrainerCallback):
    def __init__(self, out: str):
        self.out = out
        self.trainer: Any = None
        self.before: list[torch.Tensor] = []

    def bind(self, trainer: Any) -> MasterWeightsProbe:
        self.trainer = trainer
        return self

    def _masters(self) -> list[torch.Tensor]:
        params = [p for p in self.trainer.model.parameters() if p.requires_grad]
        if self.trainer.is_deepspeed_enabled:
            from deepspeed.utils import safe_get_full_fp32_param

            return [safe_get_full_fp32_param(p).detach().float().cpu().clone() for p in params]  # collective
        return [p.detach().float().cpu().clone() for p in params]

    def on_train_begin(self, args, state, control, **kwargs):
        self.before = self._masters()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != 1:
            return
        after = self._masters()
        changed = sum(int((a != b).sum()) for a, b in zip(after, self.before, strict=True))
        total = sum(a.numel() for a in after)
        if self.trainer.accelerator.is_main_process:
            param = next(p for p in self.trainer.model.parameters() if p.requires_grad)
            result = {
                "changed_fraction": changed / total,
                "trainable": total,
                "param_dtype": str(param.dtype).replace("torch.", ""),
                "deepspeed": bool(self.trainer.is_deepspeed_enabled),
                "processes": self.trainer.accelerator.num_processes,
                "bf16": bool(args.bf16),
            }
            with open(self.out, "w") as f:
                json.dump(result, f)


def main(argv: list[str]) -> None:
    out, rest = argv[0], argv[1:]
    build = train.build_callbacks
    train.build_callbacks = lambda script, training: [*build(script, training), MasterWeightsProbe(out)]
    train.cli(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
