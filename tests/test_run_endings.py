"""How a 2-process run ends: an error on one rank, a normal finish, SIGTERM (DDP over gloo on CPU).

* ``raise@1:3``: rank 1 raises inside step 3 while rank 0 goes on into that step's collectives. The run must
  print rank 1's traceback, end every process within seconds and exit non-zero (a barrier in a ``finally``
  would wait for rank 0 until the 30-minute ``ddp_timeout``).
* A finished run leaves through ``os._exit`` (train.py ``cli``), which skips the ``atexit`` hook W&B finishes
  its run with: the tracker run must be finished explicitly (``tests/fake_trackers/wandb`` records the calls),
  and the in-training evaluation's metrics must reach it as ``eval/...``, not ``train/eval/...``.
* SIGTERM (``term@1:3``) with in-training evaluation configured: checkpoint and stop, no evaluation after the
  signal (a scheduler's grace period is far shorter than a full evaluation), the tracker run finished.

Traps of CPU launches: see ../shared/notes/cpu-distributed.md.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from tests.distributed.launch import launch_two_ranks
from tests.distributed.workload import checkpointed_workload
from trl_drgrpo.training.checkpointing import SIGTERM_EXIT_CODE

REPO = Path(__file__).resolve().parents[1]
FAKE_TRACKERS = REPO / "tests" / "fake_trackers"
STEPS = 6
STOP = 3
# A run takes ~15-30 s here; a hung one is killed after this. The time from the fault to the end of all
# processes is checked separately against DOWN_WITHIN_S.
TIMEOUT_S = 240
DOWN_WITHIN_S = 60

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.fixture(scope="module")
def workload(tiny_model_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("endings")
    DatasetDict(
        {"aime": Dataset.from_dict({"problem": ["1+1=", "2+2=", "3+3="], "answer": ["2", "4", "6"]})}
    ).save_to_disk(str(root / "eval_data"))
    return checkpointed_workload(
        root,
        tiny_model_dir,
        STEPS,
        per_device_train_batch_size=4,
        report_to="wandb",
        run_name="endings",
        eval_benchmarks="aime",
        eval_data=str(root / "eval_data"),
        eval_every_steps=100,  # only at the end of training
        eval_at_start=False,
        eval_max_tokens=4,
    )


def _launch(workload: Path, name: str, faults: str = ""):
    out = workload / name
    calls = out / "wandb"
    calls.mkdir(parents=True)
    env = {
        "PYTHONPATH": os.pathsep.join([str(FAKE_TRACKERS), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "FAKE_WANDB_DIR": str(calls),
        "WANDB_MODE": "offline",
    }
    run = launch_two_ranks(workload, out, faults, timeout_s=TIMEOUT_S, env=env)
    tracker = [
        json.loads(line) for path in sorted(calls.glob("*.jsonl")) for line in path.read_text().splitlines()
    ]
    return out, run, tracker


def test_an_error_on_one_rank_ends_all_ranks_at_once_with_its_traceback(workload):
    out, run, _ = _launch(workload, "raise", f"raise@1:{STOP}")
    fired = (out / f"fired-raise@1-{STOP}").stat().st_mtime
    assert run.code is not None, f"the run hung (killed after {TIMEOUT_S} s):\n{run.stderr[-3000:]}"
    assert run.code != 0
    print(f"error to the end of the launcher: {run.ended - fired:.1f} s")
    assert run.ended - fired < DOWN_WITHIN_S, (run.ended - fired, run.stderr[-3000:])
    assert "Traceback (most recent call last)" in run.ranks[1], run.ranks[1][-3000:]
    assert f"RuntimeError: test fault raise@1:{STOP}" in run.ranks[1], run.ranks[1][-3000:]


def test_a_finished_run_finishes_its_tracker_with_the_evaluation_under_eval(workload):
    out, run, tracker = _launch(workload, "finished")
    assert run.code == 0, run.stderr[-3000:]
    assert (out / "run" / "eval" / f"step_{STEPS}" / "samples.jsonl").is_file()
    assert [c for c in tracker if c["event"] in ("init", "finish")] == [
        {"event": "init"},
        {"event": "finish", "exit_code": 0},
    ]
    keys = {k for c in tracker if c["event"] == "log" for k in c["keys"]}
    assert {"eval/aime/accuracy", "eval/average/accuracy", "train/loss"} <= keys, sorted(keys)
    assert not [k for k in keys if k.startswith("train/eval")], sorted(keys)


def test_sigterm_with_evaluation_configured_saves_and_stops_without_evaluating(workload):
    out, run, tracker = _launch(workload, "sigterm", f"term@1:{STOP}")
    took = run.ended - (out / f"fired-term@1-{STOP}").stat().st_mtime
    print(f"SIGTERM to the end of the launcher: {took:.1f} s")  # the figure in docs/preemption.md
    assert took < DOWN_WITHIN_S, run.stderr[-3000:]
    assert run.code == 1, run.stderr[-3000:]  # torch elastic reports the ranks' 143 as its own 1
    assert set(re.findall(r"exitcode\s*:\s*(-?\d+)", run.stderr)) == {str(SIGTERM_EXIT_CODE)}, run.stderr[
        -3000:
    ]
    assert (out / "run" / f"checkpoint-{STOP}" / "trainer_state.json").is_file()
    assert not (out / "run" / "eval").exists(), "an evaluation ran after SIGTERM"
    assert "SIGTERM: no evaluation at step 3" in run.ranks[0] + run.ranks[1]
    assert [c for c in tracker if c["event"] == "finish"] == [
        {"event": "finish", "exit_code": SIGTERM_EXIT_CODE}
    ]
