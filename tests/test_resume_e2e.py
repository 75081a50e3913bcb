"""Kill `recipes/train.py` at chosen moments, rerun the same command: the run equals one that was never killed.

The run: 8 questions, 4 per rollout, 2 optimizer steps per rollout, 4 steps per epoch, 12 steps (3 epochs),
save_steps 3 (so checkpoints move to the rollout boundaries 4, 6, 10, 12), logs every 2 steps. Kills land
inside the save of checkpoint-6 and after step 7 (mid-rollout; both in epoch 2), and during the generation of
step 9's rollout (epoch 3). The kill moments are reproducible: the process kills itself at named points
(``TRL_DRGRPO_TEST_FAULTS``), once each. Completions come from `recording_rollout`, which draws from torch's
global RNG (so RNG restore is tested) and records which questions each step's rollout drew.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict

from trl_drgrpo.training.checkpointing import FAULTS_DIR_ENV, FAULTS_ENV, SIGTERM_EXIT_CODE, fault_point

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "recipes" / "train.py"
RECORD_ENV = "TRL_DRGRPO_TEST_ROLLOUT_RECORD"
# Fields that measure time, not training.
TIME_KEYS = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def recording_rollout(prompts: list[str], trainer) -> dict:
    """Completions drawn from torch's global RNG; appends ``{"step", "prompts"}`` to ``$TRL_DRGRPO_TEST_ROLLOUT_RECORD``."""
    step = trainer.state.global_step + 1  # the optimizer step this rollout starts
    fault_point("rollout", step)
    tok = trainer.processing_class
    prompt_ids, completion_ids = [], []
    for prompt in prompts:
        a, b = (int(x) for x in re.findall(r"\d+", prompt)[-2:])
        wrong = int(torch.randint(0, 2, (1,)))
        filler = " ".join(str(int(x)) for x in torch.randint(0, 99, (int(torch.randint(0, 4, (1,))),)))
        ids = tok(f"{filler} \\boxed{{{a + b + wrong}}}")["input_ids"][: trainer.max_completion_length - 1]
        prompt_ids.append(tok(prompt)["input_ids"])
        completion_ids.append([*ids, tok.eos_token_id])
    with open(os.environ[RECORD_ENV], "a") as f:
        f.write(json.dumps({"step": step, "prompts": sorted(set(prompts))}) + "\n")
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def _recipe(folder: Path, model: str) -> Path:
    data = folder / "data"
    rows = [(a, b) for a in range(1, 5) for b in range(1, 3)]
    problems = {"problem": [f"{a}+{b}=" for a, b in rows], "answer": [str(a + b) for a, b in rows]}
    DatasetDict({"train": Dataset.from_dict(problems)}).save_to_disk(str(data))
    recipe = {
        "model_name_or_path": model,
        "dataset_name": str(data),
        "template": "no",
        "output_dir": str(folder / "run"),
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "steps_per_generation": 2,
        "max_completion_length": 8,
        "learning_rate": 1e-2,
        "max_steps": 12,
        "save_steps": 3,
        "logging_steps": 2,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "reward_num_workers": 1,
        "seed": 0,
        "rollout_func": "tests.test_resume_e2e.recording_rollout",
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(folder: Path, faults: str = "") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
        RECORD_ENV: str(folder / "rollouts.jsonl"),
        FAULTS_ENV: faults,
        FAULTS_DIR_ENV: str(folder),
    }
    cmd = [sys.executable, str(SCRIPT), "--config", str(folder / "recipe.yaml")]
    # A session of its own: the SIGTERM fault signals the process group, as a scheduler does.
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, start_new_session=True
    )


def _outcome(folder: Path) -> dict:
    """What must equal the uninterrupted run's: weights, optimizer state, logs, the questions of every rollout."""
    from safetensors.torch import load_file

    run = folder / "run"
    state = json.loads((run / "checkpoint-12" / "trainer_state.json").read_text())
    logs = [{k: v for k, v in entry.items() if k not in TIME_KEYS} for entry in state["log_history"]]
    rollouts: dict[int, list[str]] = {}
    for line in (folder / "rollouts.jsonl").read_text().splitlines():
        record = json.loads(line)
        rollouts[record["step"]] = record["prompts"]  # a step redone after a kill replaces the record
    optimizer = torch.load(run / "checkpoint-12" / "optimizer.pt", weights_only=True)
    return {
        "weights": load_file(str(run / "model.safetensors")),
        "optimizer": optimizer["state"],
        "logs": logs,
        "rollouts": rollouts,
    }


def _assert_same(resumed: dict, baseline: dict) -> None:
    assert resumed["rollouts"] == baseline["rollouts"]
    assert resumed["logs"] == baseline["logs"]
    assert resumed["weights"].keys() == baseline["weights"].keys()
    for name, tensor in baseline["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), name
    assert resumed["optimizer"].keys() == baseline["optimizer"].keys()
    for index, slots in baseline["optimizer"].items():
        for slot, value in slots.items():
            assert torch.equal(resumed["optimizer"][index][slot], value), (index, slot)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("uninterrupted")
    _recipe(folder, tiny_model_dir)
    result = _run(folder)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = _outcome(folder)
    epochs = [sorted(outcome["rollouts"][s] + outcome["rollouts"][s + 2]) for s in (1, 5, 9)]
    orders = [outcome["rollouts"][s] for s in (1, 5, 9)]
    assert epochs[0] == epochs[1] == epochs[2] and len(set(map(tuple, orders))) > 1  # each epoch reshuffled
    assert sorted(p.name for p in (folder / "run").glob("checkpoint-*")) == [
        "checkpoint-10",
        "checkpoint-12",
        "checkpoint-4",
        "checkpoint-6",
    ]
    return outcome


@pytest.mark.slow
def test_sigkill_anywhere_then_the_same_command_gives_the_uninterrupted_run(
    tiny_model_dir, tmp_path, uninterrupted
):
    _recipe(tmp_path, tiny_model_dir)
    faults = "save:6,step:7,rollout:9"
    codes, logs = [], []
    for _ in range(6):
        result = _run(tmp_path, faults)
        codes.append(result.returncode)
        logs.append(result.stderr)
        if result.returncode == 0:
            break
    assert codes == [-signal.SIGKILL] * 3 + [0], logs[-1][-3000:]
    assert (
        "Resuming from" in logs[1] and "checkpoint-4" in logs[1]
    )  # the half-saved checkpoint-6 was never published
    assert "checkpoint-6" in logs[2] and "checkpoint-6" in logs[3]  # after step 7 and in step 9's rollout
    assert not list((tmp_path / "run").glob("tmp-*"))
    _assert_same(_outcome(tmp_path), uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_mid_rollout_exits_and_resumes_exactly(tiny_model_dir, tmp_path, uninterrupted):
    _recipe(tmp_path, tiny_model_dir)
    stopped = _run(tmp_path, "term:9")
    assert stopped.returncode == SIGTERM_EXIT_CODE, stopped.stderr[-3000:]
    assert "Stopped by SIGTERM after optimizer step 9" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    checkpoint = tmp_path / "run" / "checkpoint-9"
    assert (checkpoint / "trainer_state.json").is_file()
    assert not (tmp_path / "run" / "model.safetensors").exists()  # the run is not finished
    state = torch.load(checkpoint / "drgrpo_rollout_state_0.pt", weights_only=False)
    assert (
        state["buffered_inputs"] is not None
    )  # step 7 is inside a rollout: its second half is in the checkpoint

    resumed = _run(tmp_path, "term:9")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-9" in resumed.stderr
    _assert_same(_outcome(tmp_path), uninterrupted)
