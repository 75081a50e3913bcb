"""Issue 11, item 2: evaluation before the first update and every 16 rollouts, whatever the process count.

The paper (oat's learner, ``--eval_steps 16``) counts rollouts: one rollout = 128 questions x 8 responses, 8
optimizer steps of 128 samples, so 16 rollouts = 128 optimizer steps; it also evaluates before training.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from tests.run_args import cpu_run_args
from trl_drgrpo.config import DrGRPOConfig, DrGRPOScriptArguments, batch_shape
from trl_drgrpo.evaluation.callback import (
    EvaluationCallback,
    eval_interval_steps,
    evaluation_steps,
    interval_from_args,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def paper_schedule(processes: int, per_device: int, max_steps: int, every_rollouts: int = 16) -> list[int]:
    """Evaluation steps of a run with the paper's global batch shape (128 per step, 1024 per rollout)."""
    accumulation, generation = batch_shape(per_device, processes, 128, 1024)
    steps_per_generation = generation // (per_device * processes)  # micro-steps per rollout (TRL)
    interval = eval_interval_steps(every_rollouts, accumulation, steps_per_generation)
    return evaluation_steps(interval, max_steps)


@pytest.mark.parametrize("processes", [1, 2, 8])
@pytest.mark.parametrize("per_device", [16, 4])
def test_paper_batch_shape_evaluates_every_128_steps_and_at_step_0(processes, per_device):
    schedule = paper_schedule(processes, per_device, max_steps=1000)
    assert schedule == [0, 128, 256, 384, 512, 640, 768, 896, 1000]  # ... and at the end of training


def test_cadence_scales_with_rollouts_and_iterations():
    # 8 optimizer steps per rollout with the paper's shape on 8 processes (no accumulation, 8 micro-steps)
    assert eval_interval_steps(1, 1, 8) == 8
    assert eval_interval_steps(16, 1, 8, num_iterations=2) == 256  # each rollout is optimised twice
    assert evaluation_steps(128, 256, eval_at_start=False) == [128, 256]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1, 8), "every_rollouts must be >= 1"),
        ((16, 0, 8), "gradient_accumulation_steps must be >= 1"),
        ((1, 3, 2), r"not a whole number of optimizer steps"),
    ],
)
def test_bad_cadence_is_one_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        eval_interval_steps(*args)


def test_script_defaults_are_the_papers():
    script = DrGRPOScriptArguments()
    assert (script.eval_every_rollouts, script.eval_every_steps, script.eval_at_start) == (16, None, True)


def test_recipe_parsed_in_one_process_gives_128_steps():
    from trl import ModelConfig, TrlParser

    parser = TrlParser((DrGRPOScriptArguments, DrGRPOConfig, ModelConfig))
    recipe = RECIPES / "qwen2.5-math-1.5b" / "drgrpo_qwen_math.yaml"
    script, train, _ = parser.parse_args_and_config(["--config", str(recipe), "--use_cpu", "true"])
    assert interval_from_args(train, script.eval_every_rollouts, script.eval_every_steps) == 128
    assert interval_from_args(train, script.eval_every_rollouts, 5) == 5  # an explicit step interval wins


# ---- a tiny run through the training script's callback factory ----------------------------------


def _reward(completions, **kwargs):
    return [float(len(c) % 2) for c in completions]


@pytest.mark.slow
def test_tiny_run_evaluates_at_step_0_and_every_rollout(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from trl_drgrpo.train import build_callbacks
    from trl_drgrpo.trainer import DrGRPOTrainer

    suite = tmp_path / "suite"
    DatasetDict({"amc": Dataset.from_dict({"problem": ["1+1?"], "answer": ["2"]})}).save_to_disk(str(suite))
    # 2 micro-steps per rollout, one per optimizer step: a rollout is 2 optimizer steps.
    args = cpu_run_args(
        DrGRPOConfig,
        tmp_path / "run",
        max_steps=4,
        per_device_train_batch_size=4,
        num_generations=4,
        steps_per_generation=2,
        max_completion_length=4,
    )
    script = DrGRPOScriptArguments(
        dataset_name="unused",
        template="no",
        eval_benchmarks="amc",
        eval_every_rollouts=1,
        eval_data=str(suite),
    )
    callbacks = build_callbacks(script, args)
    assert isinstance(callbacks[0], EvaluationCallback) and callbacks[0].every_n_steps == 2
    trainer = DrGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": [f"{a}+{a}=" for a in range(8)]}),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        callbacks=callbacks,
    )
    trainer.train()
    evals = [h["step"] for h in trainer.state.log_history if "eval_average/accuracy" in h]
    assert evals == [0, 2, 4] == evaluation_steps(2, 4)
    assert sorted(p.name for p in (tmp_path / "run" / "eval").iterdir()) == ["step_0", "step_2", "step_4"]


@pytest.mark.parametrize(
    ("global_step", "at_start", "expected"), [(0, True, [0]), (0, False, []), (384, True, [])]
)
def test_step_0_evaluation_only_on_a_fresh_start(global_step, at_start, expected):
    """Before the first update, not again when a run resumes from a checkpoint."""
    import types

    callback = EvaluationCallback("amc", every_n_steps=128, eval_at_start=at_start)
    calls = []
    callback.evaluate_now = lambda step, args=None, **kwargs: calls.append(step)
    callback.on_train_begin(None, types.SimpleNamespace(global_step=global_step), None)
    assert calls == expected
    callback.on_step_end(None, types.SimpleNamespace(global_step=256), None)
    assert calls == [*expected, 256]
