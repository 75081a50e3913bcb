"""`recipes/train.py` end to end on CPU: train a few steps, write a checkpoint, resume; clear errors on bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, DatasetDict

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "recipes" / "train.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("drgrpo_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problems(n: int = 8) -> Dataset:
    rows = [(a, b) for a in range(1, 5) for b in range(1, 3)][:n]
    return Dataset.from_dict(
        {"problem": [f"{a}+{b}=" for a, b in rows], "answer": [str(a + b) for a, b in rows]}
    )


def _recipe(tmp_path: Path, model: str, data: str, **overrides) -> Path:
    recipe = {
        "model_name_or_path": model,
        "dataset_name": data,
        "template": "no",
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 8,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "reward_num_workers": 1,
        "seed": 0,
    }
    recipe.update(overrides)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(recipe: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [sys.executable, str(SCRIPT), "--config", str(recipe), *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_checkpoint_and_resume(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    DatasetDict({"train": _problems()}).save_to_disk(str(data))
    recipe = _recipe(tmp_path, tiny_model_dir, str(data))

    first = _run(recipe)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "checkpoint-2" / "trainer_state.json").is_file()
    assert (run / "model.safetensors").is_file() and (run / "tokenizer_config.json").is_file()
    history = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    assert any("drgrpo/truncated_fraction" in h and "rewards/math_reward/mean" in h for h in history)

    second = _run(recipe, "--max_steps", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from" in second.stderr and "checkpoint-2" in second.stderr
    state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == [1, 2, 3], "the resumed run continues at step 3 instead of starting over"


@pytest.mark.slow
def test_train_from_a_jsonl_file(tiny_model_dir, tmp_path):
    data = tmp_path / "train.jsonl"
    _problems().to_json(str(data))
    recipe = _recipe(tmp_path, tiny_model_dir, str(data), max_steps=1, save_steps=10, template="qwen_math")
    result = _run(recipe)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()


def _main_with(tmp_path, tiny_model_dir, data, **overrides):
    script = _load_script()
    recipe = _recipe(tmp_path, tiny_model_dir, data, **overrides)
    args = script.make_parser().parse_args_and_config(["--config", str(recipe)])
    script.main(*args)


def test_unknown_template_lists_the_known_ones(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match=r"unknown template 'r2'.*qwen_math"):
        _main_with(tmp_path, tiny_model_dir, "unused.jsonl", template="r2")


def test_missing_data_file_is_named(tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        _main_with(tmp_path, tiny_model_dir, str(tmp_path / "missing.jsonl"))


def test_missing_columns_are_listed(tmp_path, tiny_model_dir):
    data = tmp_path / "data.jsonl"
    Dataset.from_dict({"question": ["1+1="], "solution": ["2"]}).to_json(str(data))
    with pytest.raises(ValueError, match=r"no column\(s\) \['problem', 'answer'\].*'question', 'solution'"):
        _main_with(tmp_path, tiny_model_dir, str(data))


def test_unknown_split_lists_the_splits(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    DatasetDict({"test": _problems(2)}).save_to_disk(str(data))
    with pytest.raises(ValueError, match="splits there: test"):
        _main_with(tmp_path, tiny_model_dir, str(data))


@pytest.mark.slow
def test_in_training_evaluation_from_the_recipe(tiny_model_dir, tmp_path, eval_suite_path):
    data = tmp_path / "train.jsonl"
    _problems().to_json(str(data))
    recipe = _recipe(
        tmp_path,
        tiny_model_dir,
        str(data),
        max_steps=1,
        save_steps=10,
        eval_benchmarks="aime,amc",
        eval_data=str(eval_suite_path),
        eval_limit=2,
        eval_every_steps=1,
        eval_max_tokens=8,
    )
    result = _run(recipe)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval_average/accuracy" in result.stdout + result.stderr
    samples = (tmp_path / "run" / "eval" / "step_1" / "samples.jsonl").read_text().splitlines()
    assert sorted({json.loads(line)["benchmark"] for line in samples}) == ["aime", "amc"]
    assert len(samples) == 4
    # the run's evaluations as the paper comparison reads them: the tiny model has no paper row (one line in
    # the card); a named row gives a partial comparison (2 problems per benchmark: no verdicts)
    card = (tmp_path / "run" / "README.md").read_text()
    assert "## Compared with the paper" in card and "a trained policy (step 1) of" in card
    from trl_drgrpo.analysis.paper import paper

    (result,) = paper([tmp_path / "run"], None, row="oat-zero-1.5b")["comparisons"]
    assert [c.get("reason") for c in result["benchmarks"]][:2] == [
        "2 of the paper's 30 problems",
        "2 of the paper's 83 problems",
    ]


@pytest.mark.parametrize(
    ("template", "stop_strings", "extra_eos"),
    [("r1", ["</answer>"], None), ("qwen_math", None, None), ("no", None, None)],  # the paper's endings
)
def test_template_sets_where_responses_end(tmp_path, template, stop_strings, extra_eos):
    from trl_drgrpo import DrGRPOConfig, get_template

    script = _load_script()
    args = DrGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    script.apply_template_endings(args, get_template(template), {"<|im_end|>": 7})
    assert (args.stop_strings, args.extra_eos_tokens) == (stop_strings, extra_eos)
    # a value set in the recipe wins, and a marker the tokenizer lacks is not added
    args = DrGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, stop_strings=["###"])
    script.apply_template_endings(args, get_template(template), {})
    assert (args.stop_strings, args.extra_eos_tokens) == (["###"], None)


# ---- clear errors (issue 13) ---------------------------------------------------------------------


def test_an_empty_dataset_is_a_clear_error(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    DatasetDict({"train": _problems(0)}).save_to_disk(str(data))
    with pytest.raises(ValueError, match="has no rows"):
        _main_with(tmp_path, tiny_model_dir, str(data))
    for text in ("", "\n\n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(text)
        with pytest.raises(ValueError, match="is empty|has no rows"):
            _main_with(tmp_path, tiny_model_dir, str(empty))
    from trl_drgrpo.data import to_prompt_dataset

    with pytest.raises(ValueError, match="the dataset has no rows"):
        to_prompt_dataset(_problems(0), "no")


@pytest.mark.parametrize("count", [0, -3])
def test_max_train_samples_below_one_is_refused(tmp_path, tiny_model_dir, count):
    data = tmp_path / "train.jsonl"
    _problems().to_json(str(data))
    with pytest.raises(ValueError, match=rf"max_train_samples must be >= 1 .*got {count}"):
        _main_with(tmp_path, tiny_model_dir, str(data), max_train_samples=count)


def test_too_few_questions_for_one_rollout_is_a_clear_error(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    _problems().to_json(str(data))
    with pytest.raises(ValueError, match="has 1 questions but one rollout takes 2"):
        _main_with(tmp_path, tiny_model_dir, str(data), max_train_samples=1)


def test_a_missing_model_folder_is_one_line(tmp_path, capsys):
    from trl_drgrpo.cli import run

    data = tmp_path / "train.jsonl"
    _problems().to_json(str(data))
    recipe = _recipe(tmp_path, str(tmp_path / "no-such-model"), str(data))
    assert run("train", ["--config", str(recipe)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (a progress bar may come before)
    assert "model folder" in err and "no-such-model' does not exist" in err
    assert "Repo id" not in err
