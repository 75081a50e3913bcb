"""SIGTERM on one rank of a 2-process DDP run stops both ranks at the same step; the same command then resumes.

Only rank 1 gets the signal (``term@1:3``: rank 1 signals its own pid when step 3 begins), as when a scheduler
signals one node or a launcher forwards late. Both ranks must agree to stop after step 3 (an all-reduce in
``CrashSafeTrainerMixin.agree``); without it rank 0 would go on into step 4's collectives while rank 1 waits in
the save's barrier. Step 3 starts the second rollout (``num_iterations=2``: rollouts train steps 1-2, 3-4,
5-6), so the checkpoint holds each rank's half of that rollout. The completions are a function of (step, row)
(tests/distributed/rollouts.py): a resumed run that regenerated step 4's rollout would train on other ones.
Traps of CPU launches: see ../shared/notes/cpu-distributed.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.distributed.launch import launch_two_ranks
from tests.distributed.workload import checkpointed_workload
from tests.test_resume_e2e import TIME_KEYS
from trl_drgrpo.training.checkpointing import (
    ROLLOUT_STATE,
    SIGTERM_EXIT_CODE,
    check_checkpoint,
)

STEPS = 6
STOP = 3
FAULTS = f"term@1:{STOP}"
TIMEOUT_S = 300  # a run takes ~10 s; a rank stuck in a collective would wait for the 30 min ddp_timeout

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _launch(workload: Path, out: Path, faults: str = "") -> tuple[int, str, dict[int, str]]:
    """Run the 2-process DDP training into ``out``; its exit status, the launcher's stderr, each rank's stderr."""
    run = launch_two_ranks(workload, out, faults, timeout_s=TIMEOUT_S)
    if run.code is None:
        pytest.fail(f"the 2-process run hung (killed after {TIMEOUT_S} s):\n{run.stderr[-4000:]}")
    return run.code, run.stderr, run.ranks


def _outcome(run: Path) -> dict:
    from safetensors.torch import load_file

    state = json.loads((run / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    optimizer = torch.load(run / f"checkpoint-{STEPS}" / "optimizer.pt", weights_only=True)
    return {
        "logs": [{k: v for k, v in entry.items() if k not in TIME_KEYS} for entry in state["log_history"]],
        "weights": load_file(str(run / "model.safetensors")),
        "optimizer": optimizer["state"],
    }


@pytest.fixture(scope="module")
def workload(tiny_model_dir, tmp_path_factory) -> Path:
    return checkpointed_workload(
        tmp_path_factory.mktemp("sigterm_dist"), tiny_model_dir, STEPS, per_device_train_batch_size=4
    )


@pytest.fixture(scope="module")
def uninterrupted(workload) -> dict:
    out = workload / "uninterrupted"
    code, stderr, _ = _launch(workload, out)
    assert code == 0, stderr[-4000:]
    assert [p.name for p in (out / "run").glob("checkpoint-*")] == [f"checkpoint-{STEPS}"]
    outcome = _outcome(out / "run")
    assert any(abs(entry.get("loss", 0.0)) > 1e-4 for entry in outcome["logs"]), "the workload must train"
    return outcome


def test_sigterm_on_one_rank_stops_both_at_one_step_and_resumes_exactly(workload, uninterrupted):
    out = workload / "sigterm_rank1"
    code, stderr, ranks = _launch(workload, out, FAULTS)

    # Both ranks exit 143, but torch elastic (under `accelerate launch`) reports any non-zero child exit as a
    # ChildFailedError and exits 1; the ranks' codes are only in its failure summary. Ranks that exit after the
    # first one is observed may be left out of it, so it names one or both.
    assert code == 1, stderr[-4000:]
    exit_codes = re.findall(r"exitcode\s*:\s*(-?\d+)", stderr)
    assert exit_codes and set(exit_codes) == {str(SIGTERM_EXIT_CODE)}, stderr[-4000:]
    for log in ranks.values():
        assert "Traceback" not in log, log[-4000:]
    # Rank 1 alone got the signal; rank 0 stopped after the same step because the ranks agreed. (Once a rank
    # has exited, the launcher may SIGTERM the other, hence only the part of rank 0's log before its stop line.)
    assert f"test fault term@1:{STOP} fires" in ranks[1]
    assert "SIGTERM: finishing the current optimizer step" in ranks[1]
    stop_line = f"Stopped by SIGTERM after optimizer step {STOP};"
    assert stop_line in ranks[0], ranks[0][-4000:]
    assert "SIGTERM: finishing" not in ranks[0].split(stop_line)[0]

    # One complete checkpoint at the stop step, with the part of each rank (RNG and its half of the rollout).
    run = out / "run"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("checkpoint-", "tmp-"))) == [
        f"checkpoint-{STOP}"
    ]
    checkpoint = run / f"checkpoint-{STOP}"
    check_checkpoint(checkpoint)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == STOP
    assert not (run / "model.safetensors").exists()  # the run is not finished
    for rank in (0, 1):
        assert (checkpoint / f"rng_state_{rank}.pth").is_file()
        state = torch.load(checkpoint / ROLLOUT_STATE.format(rank=rank), weights_only=False)
        assert state["step"] == STOP  # micro-steps (no gradient accumulation): this rank also stopped at 3
        assert state["buffered_inputs"] is not None  # the rest of the rollout that step 3 started

    code, stderr, ranks = _launch(workload, out, FAULTS)  # the same command; the fault fired once already
    assert code == 0, stderr[-4000:]
    assert f"Resuming from {checkpoint}" in ranks[0]
    resumed = _outcome(run)
    assert resumed["logs"] == uninterrupted["logs"]
    assert resumed["weights"].keys() == uninterrupted["weights"].keys()
    for name, tensor in uninterrupted["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), name
    assert resumed["optimizer"].keys() == uninterrupted["optimizer"].keys()
    for index, slots in uninterrupted["optimizer"].items():
        for slot, value in slots.items():
            assert torch.equal(resumed["optimizer"][index][slot], value), (index, slot)
