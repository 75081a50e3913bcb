"""Training-curve plots and the CPU demo (recipes/demo.py) end to end at a very small size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_drgrpo.demo.plots import load_log_history, metric_series, plot_training_curves

REPO = Path(__file__).resolve().parents[1]
HISTORY = [
    {"step": 1, "reward": 0.2, "completions/mean_length": 30.0, "drgrpo/correct_mean_length": 20.0},
    {"step": 2, "reward": 0.4, "completions/mean_length": 28.0, "drgrpo/incorrect_mean_length": 33.0},
    {"step": 3, "reward": 0.5, "drgrpo/truncated_fraction": 0.1, "drgrpo/zero_std_group_fraction": 0.5},
    {"step": 3, "train_runtime": 12.0},
]


def test_metric_series_skips_entries_without_the_metric():
    assert metric_series(HISTORY, "reward") == ([1, 2, 3], [0.2, 0.4, 0.5])
    assert metric_series(HISTORY, "drgrpo/correct_mean_length") == ([1], [20.0])
    assert metric_series(HISTORY, "missing") == ([], [])


def test_plot_from_trainer_state_in_checkpoint(tmp_path):
    for step, history in ((2, HISTORY[:2]), (3, HISTORY)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert load_log_history(tmp_path) == HISTORY  # the latest checkpoint
    png = Path(plot_training_curves(tmp_path, tmp_path / "plots" / "curves.png", title="t"))
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        load_log_history(tmp_path)
    (tmp_path / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="log_history"):
        load_log_history(tmp_path / "trainer_state.json")
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_training_curves([{"step": 1, "loss": 0.1}], tmp_path / "x.png")


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    """Plumbing only (a few pretraining and RL steps): the full demo is `make demo`."""
    out = tmp_path / "demo"
    cmd = [sys.executable, str(REPO / "recipes" / "demo.py"), "--output_dir", str(out)]
    cmd += ["--pretrain_steps", "5", "--max_steps", "2", "--", "--per_device_train_batch_size", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2
    for when in ("before", "after"):
        for mode in ("greedy", "sampled"):
            assert 0.0 <= summary[when][mode]["accuracy"] <= 1.0
    assert (out / "training_curves.png").is_file()
    assert (out / "drgrpo" / "config.json").is_file() and (out / "base" / "pretrain_log.json").is_file()
    assert "before RL" in result.stdout and "mean training reward" in result.stdout


def test_moving_average():
    from trl_drgrpo.demo.plots import moving_average

    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)


def test_plot_with_smoothed_reward(tmp_path):
    history = [{"step": i, "reward": i % 3 / 3} for i in range(1, 31)]
    assert Path(plot_training_curves(history, tmp_path / "r.png")).is_file()


def _demo_summary(greedy, sampled, reward=(0.1, 0.5)):
    return {
        "before": {"greedy": {"accuracy": greedy[0]}, "sampled": {"accuracy": sampled[0]}},
        "after": {"greedy": {"accuracy": greedy[1]}, "sampled": {"accuracy": sampled[1]}},
        "reward_start": reward[0],
        "reward_end": reward[1],
        "timings_s": {"cpu_s": 100.0, "total_s": 120.0},
    }


def test_sweep_table_verdicts():
    from trl_drgrpo.demo.sweep import sweep_rows, sweep_table

    rows = sweep_rows({1: _demo_summary((0.1, 0.6), (0.1, 0.5)), 0: _demo_summary((0.2, 0.5), (0.2, 0.2))})
    assert [r["seed"] for r in rows] == [0, 1]
    table, verdict = sweep_table(rows)
    assert verdict["greedy_rises_on_every_seed"] and not verdict["sampled_rises_on_every_seed"]
    assert verdict["smallest_greedy_gain"] == pytest.approx(0.3)
    assert verdict["smallest_sampled_gain"] == pytest.approx(0.0)
    assert "| 0 | 0.200 | 0.500 |" in table and "0.550 ± 0.071" in table


def test_base_model_reused_only_with_the_same_settings(tmp_path):
    from dataclasses import asdict, replace

    from trl_drgrpo.demo.run import base_is_current, demo_pretrain_arguments

    settings = demo_pretrain_arguments()
    assert not base_is_current(tmp_path, settings)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pretrain_log.json").write_text(json.dumps({"args": asdict(settings)}))
    assert base_is_current(tmp_path, settings)
    assert not base_is_current(tmp_path, replace(settings, seed=settings.seed + 1))
