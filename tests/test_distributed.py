"""`recipes/train.py` under `accelerate launch` with 2 CPU processes gives the per-step loss of one process.

The global batch is fixed by a deterministic rollout (tests/distributed/rollouts.py), one group of 8 generations
per step, split 4/4 across the two ranks, so the group statistics need the gathered rewards. Two optimisation
passes per rollout (num_iterations=2) make the second step's loss depend on the updated weights, so the check
covers gradient synchronisation too. Traps of CPU launches: see ../shared/notes/cpu-distributed.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.workload import checkpointed_workload

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "recipes" / "train.py"
STEPS = 4

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.fixture(scope="module")
def workload(tiny_model_dir, tmp_path_factory) -> Path:
    return checkpointed_workload(tmp_path_factory.mktemp("dist"), tiny_model_dir, STEPS)


def _train(
    workload: Path,
    name: str,
    launcher: list[str],
    per_device_batch: int,
    *extra: str,
    script: Path = SCRIPT,
    timeout: int = 900,
) -> list[dict]:
    out = workload / name
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "DS_ACCELERATOR": "cpu"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        *launcher,
        str(script),
        "--config",
        str(workload / "recipe.yaml"),
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        str(per_device_batch),
        *extra,
    ]
    try:
        result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: no result after {timeout} s (a hang: collectives paired wrongly?)")
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [h for h in state["log_history"] if "loss" in h]


def _accelerate(config: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "accelerate_configs" / config),
    ]


# The reference runs TRL's training phase (gradient_tokens_only off); the multi-process runs train only the tokens
# with gradient (on by default): trimmed micro-batches, zero-advantage rows left out.
TRL_PATH = ("--gradient_tokens_only", "false")


@pytest.fixture(scope="module")
def single_process(workload) -> list[dict]:
    return _train(workload, "single", [sys.executable], 8, *TRL_PATH)


def _assert_same_steps(reference: list[dict], other: list[dict]) -> None:
    assert len(reference) == len(other) == STEPS
    assert any(abs(h["loss"]) > 1e-4 for h in reference), "the workload must produce a non-zero loss"
    for ref, got in zip(reference, other, strict=True):
        assert got["loss"] == pytest.approx(ref["loss"], abs=1e-6), (ref, got)
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5, abs=1e-7), (ref, got)
        assert got.get("reward") == pytest.approx(ref.get("reward"), abs=1e-7)
        clip = [key for key in ref if key.startswith("clip_ratio/")]
        assert clip and all(got[key] == pytest.approx(ref[key], abs=1e-6) for key in clip), (ref, got)


def test_ddp_two_processes_match_one(workload, single_process):
    _assert_same_steps(
        single_process, _train(workload, "ddp", _accelerate("cpu_ddp.yaml"), per_device_batch=4)
    )


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_zero2_two_processes_match_one(workload, single_process):
    _assert_same_steps(
        single_process, _train(workload, "zero2", _accelerate("cpu_zero2.yaml"), per_device_batch=4)
    )


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_zero3_two_processes_match_one(workload, single_process):
    _assert_same_steps(
        single_process, _train(workload, "zero3", _accelerate("cpu_zero3.yaml"), per_device_batch=4)
    )


# A rank whose whole micro-batch has advantage 0 (tests/distributed/rollouts.py: flat_rank_rollout): it still runs
# forward/backward (one zero-weight row per kept row of the other rank), so the collectives match.
@pytest.fixture(scope="module")
def flat_rank_workload(tiny_model_dir, tmp_path_factory) -> Path:
    return checkpointed_workload(
        tmp_path_factory.mktemp("flat_rank"),
        tiny_model_dir,
        STEPS,
        num_generations=4,
        rollout_func="tests.distributed.rollouts.flat_rank_rollout",
    )


@pytest.fixture(scope="module")
def flat_rank_single(flat_rank_workload) -> list[dict]:
    return _train(flat_rank_workload, "single", [sys.executable], 16, *TRL_PATH)


def test_ddp_with_an_all_zero_advantage_rank(flat_rank_workload, flat_rank_single):
    runs = _train(flat_rank_workload, "ddp", _accelerate("cpu_ddp.yaml"), 8)
    _assert_same_steps(flat_rank_single, runs)
    assert all(h["drgrpo/trained_token_fraction"] < 0.6 for h in runs)  # half the rows (or fewer) trained


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_zero2_with_an_all_zero_advantage_rank(flat_rank_workload, flat_rank_single):
    runs = _train(flat_rank_workload, "zero2", _accelerate("cpu_zero2.yaml"), 8)
    _assert_same_steps(flat_rank_single, runs)
    assert all(h["drgrpo/trained_token_fraction"] < 0.6 for h in runs)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_zero3_with_an_all_zero_advantage_rank(flat_rank_workload, flat_rank_single):
    runs = _train(flat_rank_workload, "zero3", _accelerate("cpu_zero3.yaml"), 8)
    _assert_same_steps(flat_rank_single, runs)
    assert all(h["drgrpo/trained_token_fraction"] < 0.6 for h in runs)


def test_ddp_with_a_key_only_one_rank_cannot_slice(flat_rank_workload, flat_rank_single):
    """Rank 1's micro-batches carry a key gradient_tokens_only cannot slice (as TRL's image keys on the ranks
    with images): both ranks train them whole (one agreed decision), and the run is TRL's. Rank 0 alone would
    leave out its zero-advantage rows."""
    runs = _train(
        flat_rank_workload,
        "odd_key",
        _accelerate("cpu_ddp.yaml"),
        8,
        script=REPO / "tests" / "distributed" / "odd_key_train.py",
        timeout=300,
    )
    _assert_same_steps(flat_rank_single, runs)
    assert all(h["drgrpo/trained_token_fraction"] == 1.0 for h in runs)  # rank 0 trained whole too
