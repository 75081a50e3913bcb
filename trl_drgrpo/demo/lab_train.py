"""``recipes/train.py`` for the bias lab, recording every rollout for the mechanism metrics.

    python -m trl_drgrpo.demo.lab_train --config recipes/lab/bias_lab.yaml [--slip_rate R] [--any_field value ...]

The same run as ``recipes/train.py`` (same trainer, same loss, same numbers); in addition each training
rollout appends one line to ``<output_dir>/rollouts.jsonl``: the responses' text and token lengths, gold
answers, rewards, the advantages trained on and the run's two switches (``lab_mechanism`` reads it).
Single-process runs only (the lab runs each arm in one process). ``--slip_rate R`` injects slips at a fixed
rate (``lab_slips``); the records then say which responses were forced (``injected``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..trainer import DrGRPOTrainer

ROLLOUTS_FILE = "rollouts.jsonl"


class RecordingTrainer(DrGRPOTrainer):
    """``DrGRPOTrainer`` that writes each training rollout to ``rollouts.jsonl`` (main process only)."""

    slip_rate = 0.0  # set by main from --slip_rate

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        injector = None
        if self.slip_rate and self.model.training:
            from .lab_slips import SlipInjector, injecting, slip_plan, slip_text

            plan = slip_plan(len(inputs), self.slip_rate, self.args.seed, self.state.global_step)
            texts = [slip_text(x.get("answer")) if on else None for x, on in zip(inputs, plan, strict=True)]
            targets = [
                self.processing_class(t, add_special_tokens=False)["input_ids"] if t else None for t in texts
            ]
            injector = SlipInjector(self.processing_class, targets)
            with injecting(self.model, injector):
                output = super()._generate_and_score_completions(inputs)
        else:
            output = super()._generate_and_score_completions(inputs)
        if not self.model.training or not self.accelerator.is_main_process:
            return output
        if self.accelerator.num_processes > 1:
            raise RuntimeError("lab_train records single-process runs only")
        mask = output["completion_mask"]
        lengths = mask.sum(dim=1).tolist()
        texts = [
            self.processing_class.decode(ids[: int(n)], skip_special_tokens=True)
            for ids, n in zip(output["completion_ids"].tolist(), lengths, strict=True)
        ]
        rewards_per_func, truncated, _ = self._rollout
        record = {
            "step": self.state.global_step + 1,
            "answers": [str(x.get("answer", "")) for x in inputs],
            "completions": texts,
            "lengths": [int(n) for n in lengths],
            "rewards": self._total_reward(rewards_per_func).tolist(),
            "advantages": output["advantages"].tolist(),
            "truncated": [bool(t) for t in truncated.tolist()],
            "group_size": self.num_generations,
            "length_normalization": bool(self.args.length_normalization),
            "std_normalization": bool(self.args.std_normalization),
            "length_weight_exponent": self.args.length_weight_exponent,
            "budget": int(self.args.loss_normalizer or self.max_completion_length),
        }
        if injector is not None:
            record["injected"] = list(injector.forced)
        with open(os.path.join(self.args.output_dir, ROLLOUTS_FILE), "a") as f:
            f.write(json.dumps(record) + "\n")
        return output


def main(argv: list[str]) -> int:
    from .. import train as train_module
    from ..cli import run

    argv = list(argv)
    if "--slip_rate" in argv:
        i = argv.index("--slip_rate")
        try:
            RecordingTrainer.slip_rate = float(argv[i + 1])
        except (IndexError, ValueError):
            raise SystemExit("--slip_rate needs a number in [0, 1]") from None
        if not 0.0 <= RecordingTrainer.slip_rate <= 1.0:
            raise SystemExit(f"--slip_rate must be in [0, 1], got {RecordingTrainer.slip_rate}")
        del argv[i : i + 2]
    train_module.DrGRPOTrainer = RecordingTrainer  # the training script builds this class
    return run("train", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
