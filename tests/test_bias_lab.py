"""The bias lab: report arithmetic (pure functions) and a shortened lab end to end, checked against its logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_drgrpo.demo.lab import ARMS, arm_command, parse_args
from trl_drgrpo.demo.lab_report import (
    build_report,
    mean_std,
    permutation_test,
    run_numbers,
    start_end,
    values_of,
)

REPO = Path(__file__).resolve().parents[1]


def _history(rewards, incorrect):
    return [
        {"step": i + 1, "reward": r, "drgrpo/incorrect_mean_length": n}
        for i, (r, n) in enumerate(zip(rewards, incorrect, strict=True))
    ] + [{"step": len(rewards), "train_runtime": 1.0}]


def test_start_end_and_run_numbers():
    assert start_end([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2) == (1.5, 5.5)
    assert start_end([1.0, 3.0], 10) == (1.0, 3.0)  # at most half the values each
    with pytest.raises(ValueError, match="no values"):
        start_end([], 3)
    numbers = run_numbers(_history([0.1, 0.2, 0.3, 0.5], [10.0, 10.0, 20.0, 30.0]), window=2)
    assert numbers["reward_start"] == pytest.approx(0.15) and numbers["reward_end"] == pytest.approx(0.4)
    assert numbers["incorrect_length_ratio"] == pytest.approx(2.5)
    assert numbers["correct_length_ratio"] is None and numbers["truncated_end"] is None


def test_permutation_test_exact():
    # fully separated samples of 3: only the observed split and its mirror are as extreme -> 2 / C(6,3)
    assert permutation_test([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]) == pytest.approx(0.1)
    assert permutation_test([1.0, 2.0], [1.0, 2.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        permutation_test([], [1.0])


def test_build_report_tables_every_arm():
    histories = {
        "grpo": {"0": _history([0.1, 0.3], [10.0, 20.0]), "1": _history([0.1, 0.5], [10.0, 30.0])},
        "drgrpo": {"0": _history([0.1, 0.4], [10.0, 10.0]), "1": _history([0.2, 0.4], [10.0, 12.0])},
    }
    accuracies = {"grpo": {"0": 0.5, "1": 0.7}, "drgrpo": {"0": 0.6, "1": 0.6}}
    report = build_report(histories, accuracies, labels={"grpo": "GRPO", "drgrpo": "Dr. GRPO"}, window=1)
    grpo = next(r for r in report["arms"] if r["arm"] == "grpo")
    assert grpo["incorrect_length_ratio"] == pytest.approx(mean_std([2.0, 3.0]))
    assert grpo["greedy_accuracy"][0] == pytest.approx(0.6)
    assert set(report["permutation_p"]) == {"incorrect_length_ratio", "reward_end", "greedy_accuracy"}
    assert "| GRPO | 2 |" in report["markdown"] and "| Dr. GRPO | 2 |" in report["markdown"]


def test_arguments_and_commands(tmp_path):
    args, extra = parse_args(["--arms", "grpo,drgrpo", "--seeds", "3", "--max_steps", "4", "--", "--x", "1"])
    assert args.arm_list == ["grpo", "drgrpo"] and args.seed_list == [3] and extra == ["--x", "1"]
    cmd = arm_command(args, "grpo", 3, tmp_path / "b", tmp_path / "d", tmp_path / "r", extra)
    assert cmd[1:3] == ["-m", "trl_drgrpo.demo.lab_train"]  # train.py plus the rollout records
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--length_normalization"] == "true" and flags["--std_normalization"] == "true"
    assert flags["--seed"] == "3" and flags["--max_steps"] == "4" and cmd[-2:] == ["--x", "1"]
    assert ARMS["drgrpo"] == (False, False) and ARMS["length_only"] == (True, False)
    for bad in (["--arms", "ppo"], ["--seeds", "a"], ["--jobs", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_variants_keep_the_first_lab_and_add_the_decision_task():
    from trl_drgrpo.demo.lab_variants import variant_settings
    from trl_drgrpo.demo.run import TASK, demo_pretrain_arguments

    settings, task, recipe = variant_settings("v1")
    assert settings == demo_pretrain_arguments() and task == TASK and recipe.endswith("bias_lab.yaml")
    assert parse_args(["--variant", "v1"])[0].recipe == str(REPO / "recipes" / "lab" / "bias_lab.yaml")
    # the default (pre-registered) lab: a base that always boxes, right answers stop, wrong ones may continue
    args = parse_args([])[0]
    assert args.variant == "decision" and args.recipe == str(REPO / "recipes/lab/bias_lab_decision.yaml")
    assert args.seed_list == list(range(8)) and args.side_seed_list == [0, 1]
    settings, task, _ = variant_settings("decision")
    assert settings.unboxed_rate == 0.0 and settings.steps_rate == 0.0 and 0 < settings.ramble_rate < 1
    assert settings.result_first and task == TASK  # the demo's task, a slip visible in the response
    # --seeds alone applies to every arm; --side_seeds sets the single-bias arms
    args = parse_args(["--seeds", "3,4"])[0]
    assert args.seed_list == [3, 4] and args.side_seed_list == [3, 4]
    settings, task, recipe = variant_settings("persistent")
    assert (
        task["max_mul_operand"] > TASK["max_mul_operand"]
        and settings.max_mul_operand == task["max_mul_operand"]
    )
    assert settings.ramble_continue > demo_pretrain_arguments().ramble_continue
    assert parse_args(["--variant", "persistent"])[0].recipe == str(REPO / recipe)
    # same RL settings as the default lab, only the output paths differ
    import yaml

    default = yaml.safe_load((REPO / "recipes/lab/bias_lab.yaml").read_text())
    harder = yaml.safe_load((REPO / recipe).read_text())
    differ = {k for k in default.keys() | harder.keys() if default.get(k) != harder.get(k)}
    assert differ == {"model_name_or_path", "dataset_name", "output_dir"}
    with pytest.raises(ValueError, match="unknown lab variant"):
        variant_settings("nope")
    with pytest.raises(SystemExit):
        parse_args(["--variant", "nope"])


@pytest.mark.slow
def test_short_lab_report_matches_the_run_logs(tmp_path):
    """Two seeds, two arms, three RL steps on a barely pretrained model: plumbing and the report's numbers,
    each recomputed here from the run logs (trainer_state.json, rollouts.jsonl, heldout_eval.json)."""
    from trl_drgrpo.demo.lab_mechanism import log_drift, pooled_rate, rollout_mechanism
    from trl_drgrpo.demo.lab_report import window_weights

    out = tmp_path / "lab"
    cmd = [sys.executable, "-m", "trl_drgrpo.demo.lab", "--output_dir", str(out), "--arms", "grpo,drgrpo"]
    cmd += ["--seeds", "0,1", "--max_steps", "3", "--pretrain_steps", "3", "--window", "1", "--jobs", "2"]
    cmd += ["--", "--per_device_train_batch_size", "16", "--max_completion_length", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "lab_summary.json").read_text())
    for name in ("dynamics", "mechanism", "drift", "difficulty"):
        assert (out / "plots" / f"{name}.png").is_file()
    drift = {}
    for arm in ("grpo", "drgrpo"):
        for seed in ("0", "1"):
            run = out / "runs" / arm / f"seed{seed}"
            state = json.loads(next(run.glob("checkpoint-*/trainer_state.json")).read_text())
            history = state["log_history"]
            rewards = values_of(history, "reward")
            assert len(rewards) == 3
            figures = summary["per_run"][arm][seed]
            assert figures["reward_start"] == pytest.approx(rewards[0])
            assert figures["reward_end"] == pytest.approx(rewards[-1])
            accuracy = json.loads((run / "heldout_eval.json").read_text())["accuracy"]
            assert figures["greedy_accuracy"] == pytest.approx(accuracy)
            records = [json.loads(line) for line in (run / "rollouts.jsonl").read_text().splitlines()]
            assert [r["step"] for r in records] == [1, 2, 3] and all(
                len(r["completions"]) == 16 for r in records
            )
            # the recorded rewards are the logged ones; the switches are the arm's
            assert [sum(r["rewards"]) / 16 for r in records] == pytest.approx(rewards)
            assert all(r["length_normalization"] == (arm == "grpo") for r in records)
            steps = [rollout_mechanism(r) for r in records]
            counts = [s["counts_wrong"] for s in steps]
            assert figures["p_continue_wrong_start"] == pooled_rate(counts[:1])
            assert figures["drift_measured"] == pytest.approx(log_drift(counts, 1))
            weights = window_weights(3, 1)
            assert figures["drift_predicted_signal"] == pytest.approx(
                sum(w * s["pred_drift"] for w, s in zip(weights, steps, strict=True))
            )
            drift.setdefault(arm, []).append(figures["drift_measured"])
        row = next(r for r in summary["arms"] if r["arm"] == arm)
        values = [summary["per_run"][arm][s]["reward_end"] for s in ("0", "1")]
        assert row["reward_end"] == pytest.approx(list(mean_std(values)))
    test = summary["mechanism"]["primary_test"]
    assert test["grpo"] == pytest.approx(drift["grpo"]) and test["drgrpo"] == pytest.approx(drift["drgrpo"])
    assert test["p"] == pytest.approx(permutation_test(drift["grpo"], drift["drgrpo"]))
    text = (out / "report.md").read_text()
    assert f"p = {test['p']:.4f}" in text and "Pre-registered primary test" in text
    assert "Difficulty bias" in text and "plots/mechanism.png" in text and "plots/dynamics.png" in text
    assert len(summary["base_weights_sha256"]) == 64
