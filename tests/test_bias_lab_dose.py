"""The dose-response analysis (lab_dose) on fixed numbers, and the committed per-run data recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trl_drgrpo.demo import lab_dose
from trl_drgrpo.demo.lab import arm_alpha, arm_command, parse_args

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bias_lab"


def test_ranks_and_spearman_hand_values():
    assert lab_dose.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert lab_dose.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert lab_dose.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties in x: ranks (1.5, 1.5, 3.5, 3.5) vs (1, 3, 2, 4): r = 2 / sqrt(4 * 5) by hand
    assert lab_dose.spearman([0, 0, 1, 1], [1, 3, 2, 4]) == pytest.approx(2 / 20**0.5)


def test_trend_test_p_values():
    alphas = [0, 0, 0, 1, 1, 1]
    rho, p = lab_dose.trend_test(alphas, [1, 2, 3, 4, 5, 6], permutations=20_000, seed=0)
    # perfectly separated: |rho| is the maximum in 2 of C(6, 3) = 20 labellings -> p ~ 0.1
    assert rho == pytest.approx(0.8783, abs=1e-4) and p == pytest.approx(0.1, abs=0.01)
    assert lab_dose.trend_test(alphas, [1, 2, 3, 4, 5, 6], 2000, seed=3) == lab_dose.trend_test(
        alphas, [1, 2, 3, 4, 5, 6], 2000, seed=3
    )
    strong = [a for a in (0, 0.25, 0.5, 1) for _ in range(6)]
    assert lab_dose.trend_test(strong, [a + 0.01 * i for i, a in enumerate(strong)], 5000)[1] < 0.001


def test_predicted_signal_interpolates_between_the_measured_ends():
    assert lab_dose.length_ratio_factor(0.0, 0.46) == 0.0
    assert lab_dose.length_ratio_factor(1.0, 0.46) == pytest.approx(1.0)
    assert lab_dose.length_ratio_factor(0.5, 0.25) == pytest.approx(0.5 / 0.75)  # (1 - 0.5) / (1 - 0.25)
    assert lab_dose.predicted_signal(1.0, -0.002, 0.046, 0.46) == pytest.approx(0.046)
    with pytest.raises(ValueError):
        lab_dose.length_ratio_factor(0.5, 1.0)


def test_committed_preregistration_is_what_the_inputs_give():
    committed = json.loads((DOCS / "dose_preregistration.json").read_text())
    again = lab_dose.preregistration(power_trials=0)
    for alpha, band in again["predictions"].items():
        assert committed["predictions"][alpha] == pytest.approx(band)
    # alpha 0 and 1 are the v2 line at the measured pushes of the Dr. GRPO and length-norm-only arms
    assert again["predictions"]["0"]["predicted"] == pytest.approx(-1.45 + 14.4 * -0.002)
    assert again["predictions"]["1"]["predicted"] == pytest.approx(-1.45 + 14.4 * 0.046)
    assert 0.2 < committed["power"] < 0.6  # stated as low


def test_v2_p_values_recompute_from_the_committed_per_seed_values():
    stats = lab_dose.v2_statistics(json.loads((DOCS / "runs_v2.json").read_text()))
    assert stats["p_seeds_0_7"] == pytest.approx(98 / 12870)  # docs: p = 0.0076
    assert round(stats["p_seeds_1_7"], 3) == 0.026 and round(stats["difference"], 3) == 0.721


def test_dose_statistics_on_fixed_numbers():
    pre = lab_dose.preregistration(power_trials=0) | {"permutations": 2000}
    runs = [
        {"alpha": a, "seed": s, "drift_measured": pre["predictions"][f"{a:g}"]["predicted"] + d}
        for a in pre["alphas"]
        for s, d in zip(pre["seeds"], (-0.2, -0.1, 0.0, 0.0, 0.1, 0.2), strict=True)
    ]
    stats = lab_dose.dose_statistics({"preregistered": pre, "runs": runs})
    assert [row["measured_mean"] for row in stats["table"]] == pytest.approx(
        [pre["predictions"][f"{a:g}"]["predicted"] for a in pre["alphas"]]
    )
    assert all(row["inside"] for row in stats["table"]) and stats["rho_positive"] and stats["significant"]
    assert "held" in lab_dose.dose_markdown(stats) and "did not hold" not in lab_dose.dose_markdown(stats)
    flat = [dict(r, drift_measured=-1.2 + 0.01 * (r["seed"] % 2)) for r in runs]
    stats = lab_dose.dose_statistics({"preregistered": pre, "runs": flat})
    assert not stats["significant"] and "did not hold" in lab_dose.dose_markdown(stats)


def test_alpha_arms_and_their_commands(tmp_path):
    args, extra = parse_args(["--alphas", "0,0.25,1", "--seeds", "2001,2002"])
    assert args.arm_list == ["alpha0", "alpha0.25", "alpha1"] and [arm_alpha(a) for a in args.arm_list] == [
        0.0,
        0.25,
        1.0,
    ]
    cmd = arm_command(args, "alpha0.25", 2001, tmp_path / "b", tmp_path / "d", tmp_path / "r", extra)
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--length_weight_exponent"] == "0.25" and flags["--std_normalization"] == "false"
    assert "--length_normalization" not in flags  # alpha decides it
    args, _ = parse_args(["--slip_rate", "0.3"])
    cmd = arm_command(args, "grpo", 0, tmp_path / "b", tmp_path / "d", tmp_path / "r", [])
    assert cmd[-2:] == ["--slip_rate", "0.3"]
    for bad in (["--alphas", "1.5"], ["--alphas", "x"], ["--alphas", ""], ["--slip_rate", "2"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
