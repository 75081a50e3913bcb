"""``analyze dynamics``: training logs of runs (own / checkpoint trainer_state.json, in-training evals),
overlaid and grouped by arm, numbers checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trl_drgrpo.analysis.cli import main
from trl_drgrpo.analysis.dynamics import aggregate, dynamics, mean_std, moving_average
from trl_drgrpo.analysis.io import AnalysisError, load_training_log


def _log(rewards, correct=None, incorrect=None, truncated=None, zero=None, keys=None):
    keys = keys or {}
    entries = []
    for i, r in enumerate(rewards):
        e = {"step": i + 1, "loss": 0.0, "reward": r}
        for name, values in (
            (keys.get("correct", "drgrpo/correct_mean_length"), correct),
            (keys.get("incorrect", "drgrpo/incorrect_mean_length"), incorrect),
            (keys.get("truncated", "drgrpo/truncated_fraction"), truncated),
            (keys.get("zero", "drgrpo/zero_std_group_fraction"), zero),
        ):
            if values is not None:
                e[name] = values[i]
        entries.append(e)
    return entries


def _state(path: Path, history: list[dict], step: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))


def _eval_summary(run: Path, step: int, accuracy: float) -> None:
    folder = run / "eval" / f"step_{step}"
    folder.mkdir(parents=True)
    summary = {
        "step": step,
        "benchmarks": {"math": {"accuracy": accuracy}},
        "average": {"accuracy": accuracy},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def runs(tmp_path):
    a = tmp_path / "grpo-s0"
    history = _log(
        [0.1, 0.2, 0.3, 0.4], [10, 12, 14, 16], [20, 25, 30, 35], [0, 0, 0.5, 0.5], [0.5, 0.25, 0.25, 0]
    )
    history.append({"step": 2, "eval/math/accuracy": 0.3, "eval/average/accuracy": 0.3})
    history.append({"step": 4, "train_runtime": 12.0, "train_loss": 0.1})  # end-of-training entry
    _state(a, history, 4)
    _eval_summary(a, 4, 0.5)  # written by the in-training evaluation, not in the log
    _eval_summary(a, 2, 0.9)  # already logged: the log's value wins
    b = tmp_path / "grpo-s1"
    # only checkpoints; the most advanced one holds the full log
    _state(b / "checkpoint-2", _log([0.3, 0.4], [10, 10], [20, 20]), 2)
    _state(b / "checkpoint-4", _log([0.3, 0.4, 0.5, 0.6], [10, 10, 10, 10], [20, 22, 24, 26]), 4)
    c = tmp_path / "trl-only"
    keys = {"truncated": "completions/clipped_ratio", "zero": "frac_reward_zero_std"}
    _state(c, _log([0.0, 0.5], truncated=[0.25, 0.75], zero=[1.0, 0.5], keys=keys), 2)
    return a, b, c


def test_pure_helpers():
    assert moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
    assert mean_std([1.0]) == (1.0, 0.0)
    m, s = mean_std([1.0, 3.0])
    assert m == 2.0 and s == pytest.approx(math.sqrt(2))
    steps, mean, std = aggregate([([1, 2], [1.0, 2.0]), ([2, 3], [4.0, 5.0])])
    assert (
        steps == [1, 2, 3]
        and mean == [1.0, 3.0, 5.0]
        and std[0] == 0.0
        and std[1] == pytest.approx(math.sqrt(2))
    )


def test_training_log_sources(runs):
    a, b, _ = runs
    history = load_training_log(a)
    evals = {e["step"]: e["eval/average/accuracy"] for e in history if "eval/average/accuracy" in e}
    assert evals == {2: 0.3, 4: 0.5}
    rewards = [e["reward"] for e in load_training_log(b) if "reward" in e]
    assert rewards == [0.3, 0.4, 0.5, 0.6]
    assert [
        e["reward"] for e in load_training_log(b / "checkpoint-2" / "trainer_state.json") if "reward" in e
    ] == [
        0.3,
        0.4,
    ]


def test_dynamics_runs_groups_and_outputs(runs, tmp_path):
    from PIL import Image

    a, b, c = runs
    out = tmp_path / "dyn"
    summary = dynamics([c], out, groups={"grpo": [a, b]}, window=2, show_progress=False)
    ra, rb, rc = summary["runs"]["grpo-s0"], summary["runs"]["grpo-s1"], summary["runs"]["trl-only"]
    assert ra["group"] == "grpo" and rc["group"] is None
    # window 2: start = mean of the first two points, end = mean of the last two
    assert ra["metrics"]["reward"]["start"] == pytest.approx(0.15) and ra["metrics"]["reward"][
        "end"
    ] == pytest.approx(0.35)
    assert ra["metrics"]["incorrect_length"]["end"] == pytest.approx(32.5)
    assert (
        ra["metrics"]["eval_accuracy"]["end"] == pytest.approx(0.4)
        and ra["metrics"]["eval_accuracy"]["points"] == 2
    )
    assert rb["metrics"]["reward"]["end"] == pytest.approx(0.55) and rb["metrics"]["reward"]["last_step"] == 4
    assert "eval_accuracy" not in rb["metrics"]
    # TRL's own metric names stand in for ours
    assert rc["metrics"]["truncated"]["key"] == "completions/clipped_ratio"
    assert rc["metrics"]["zero_spread"]["end"] == pytest.approx(0.75)
    assert "correct_length" not in rc["metrics"]
    grpo = summary["groups"]["grpo"]
    assert grpo["runs"] == ["grpo-s0", "grpo-s1"]
    reward = grpo["metrics"]["reward"]
    assert reward["end_mean"] == pytest.approx(0.45) and reward["end_std"] == pytest.approx(
        0.1 * math.sqrt(2)
    )
    assert reward["curve"]["steps"] == [1, 2, 3, 4]
    assert reward["curve"]["mean"] == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert grpo["metrics"]["eval_accuracy"]["runs"] == 1

    written = json.loads((out / "summary.json").read_text())
    assert written["groups"]["grpo"]["metrics"]["reward"]["end_mean"] == pytest.approx(0.45)
    table = (out / "dynamics.md").read_text()
    assert "| grpo-s0 | grpo | 4 | 0.15 | 0.35 | 15 | 32.5 | 50.0 | 12.5 | 40.0 |" in table
    assert "| **grpo** (mean ± std) | 2 runs |  | 0.25 ± 0.141 | 0.45 ± 0.141 |" in table
    for name in ("dynamics.png", "dynamics_benchmarks.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 300


def test_dynamics_group_names_per_run_and_smoothing(runs):
    a, b, _ = runs
    summary = dynamics(
        [a, b], None, groups=["x", "x"], labels=["A", "B"], smooth=2, window=1, show_progress=False
    )
    # start/end values are raw; the curves are smoothed: A [0.1, 0.15, 0.25, 0.35], B [0.3, 0.35, 0.45, 0.55]
    assert summary["runs"]["A"]["metrics"]["reward"]["end"] == pytest.approx(0.4)
    reward = summary["groups"]["x"]["metrics"]["reward"]
    assert reward["end_mean"] == pytest.approx(0.5)
    assert reward["curve"]["mean"] == pytest.approx([0.2, 0.25, 0.35, 0.45])


def _cli_error(capsys, argv, match):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and match in err, err


def test_dynamics_cli_and_bad_inputs(runs, tmp_path, capsys):
    a, b, c = runs
    out = tmp_path / "cli"
    assert main(["dynamics", str(c), "--group", "grpo", str(a), str(b), "--window", "2", "--output_dir", str(out),
                 "--no_progress"]) == 0  # fmt: skip
    assert "| **grpo** (mean ± std) | 2 runs |" in capsys.readouterr().out
    assert (out / "dynamics.png").stat().st_size > 0

    _cli_error(capsys, ["dynamics", str(tmp_path / "nope"), "--output_dir", str(out)], "not found")
    (tmp_path / "norun").mkdir()
    _cli_error(
        capsys, ["dynamics", str(tmp_path / "norun"), "--output_dir", str(out)], "no trainer_state.json"
    )
    _state(tmp_path / "sft", [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}], 2)
    _cli_error(capsys, ["dynamics", str(tmp_path / "sft"), "--output_dir", str(out)], "none of the metrics")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "trainer_state.json").write_text('{"global_step": 3}')
    _cli_error(capsys, ["dynamics", str(tmp_path / "broken"), "--output_dir", str(out)], "no 'log_history'")
    (tmp_path / "broken" / "trainer_state.json").write_text('{"global_step": ')
    _cli_error(capsys, ["dynamics", str(tmp_path / "broken"), "--output_dir", str(out)], "not valid JSON")
    _cli_error(capsys, ["dynamics", "--output_dir", str(out)], "no training run given")
    _cli_error(
        capsys,
        ["dynamics", str(a), "--labels", "x", "y", "--output_dir", str(out)],
        "2 labels given for 1 runs",
    )
    with pytest.raises(AnalysisError, match="group 'g' has no runs"):
        dynamics([], None, groups={"g": []}, show_progress=False)
