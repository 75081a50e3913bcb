"""The slip experiment's statistics (lab_slip_stats) on fixed numbers, and its committed pre-registration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trl_drgrpo.demo import lab_slip_stats as slip

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bias_lab"


def test_welch_se_and_log_rate_variance_hand_values():
    assert slip.mean_sd([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    # var 2/2 + var 8/4 -> sqrt(1 + 2)
    assert slip.welch_se([1.0, 3.0], [0.0, 0.0, 4.0, 4.0]) == pytest.approx(math.sqrt(1 + 16 / 3 / 4))
    # 20 events at rate 0.5 with the 0.5 floor: q = 10.5 / 21 = 0.5 -> 0.5 / (21 * 0.5)
    assert slip.log_rate_variance(0.5, 20) == pytest.approx(1 / 21)
    assert slip.log_rate_variance(0.0, 0) == pytest.approx(0.5 / (1 * 0.5))
    with pytest.raises(ValueError):
        slip.log_rate_variance(1.5, 10)


def test_trajectory_variance_removes_the_counting_noise():
    row = {"p_continue_wrong_start": 0.5, "p_continue_wrong_end": 0.5, "wrong_rate_start": 20 / 640}
    row["wrong_rate_end"] = 20 / 640
    runs = [dict(row, alpha=0, drift_measured=d) for d in (-1.0, 0.0)]  # sample variance 0.5
    assert slip.trajectory_variance(runs, 640) == pytest.approx(0.5 - 2 / 21)
    quiet = [dict(r, drift_measured=-0.5) for r in runs]  # no spread: floored at 0
    assert slip.trajectory_variance(quiet, 640) == 0.0
    with pytest.raises(ValueError):
        slip.trajectory_variance(runs[:1], 640)


def test_simulated_power_extremes():
    assert slip.simulated_power(5.0, 0.1, 0.0, 0.1, 6, 0.05, trials=30, permutations=300) == 1.0
    assert slip.simulated_power(0.0, 1.0, 0.0, 1.0, 6, 0.05, trials=60, permutations=300) < 0.2
    # the wrong sign never counts as a hit
    assert slip.simulated_power(-5.0, 0.1, 0.0, 0.1, 6, 0.05, trials=10, permutations=300) == 1.0
    assert slip.simulated_power(0.0, 0.1, 5.0, 0.1, 6, 0.05, trials=10, permutations=300) == 1.0


def _data(grpo_drift, drgrpo_drift, grpo_right, drgrpo_right):
    pre = slip.preregistration(json.loads((DOCS / "runs_v2.json").read_text()), _dose(), power=False)
    runs = []
    for arm, drifts, rights in (("grpo", grpo_drift, grpo_right), ("drgrpo", drgrpo_drift, drgrpo_right)):
        for i, (d, r) in enumerate(zip(drifts, rights, strict=True)):
            runs.append({"arm": arm, "seed": 3001 + i, "drift_slip": d, "p_continue_right_end": r})
    return {"preregistered": pre, "runs": runs}


def _dose():
    return json.loads((DOCS / "runs_dose.json").read_text())


def test_slip_statistics_on_fixed_numbers():
    data = _data([0.0, 0.1, 0.2, 0.3], [-1.0, -0.9, -0.8, -0.7], [0.05, 0.06, 0.07, 0.08], [0.01] * 4)
    stats = slip.slip_statistics(data)
    p = stats["primary"]
    # fully separated 4 + 4: the two extreme labellings of C(8, 4) = 70
    assert p["difference"] == pytest.approx(1.0) and p["p"] == pytest.approx(2 / 70)
    assert p["held"] and p["inside_interval"] and stats["right"]["held"]
    assert stats["arms"]["grpo"]["drift_slip"]["se"] == pytest.approx(math.sqrt(1 / 60) / 2)
    assert "| yes" in slip.slip_markdown(stats)
    flipped = slip.slip_statistics(
        _data([-1.0, -0.9, -0.8, -0.7], [0.0, 0.1, 0.2, 0.3], [0.01] * 4, [0.01] * 4)
    )
    assert not flipped["primary"]["held"] and flipped["primary"]["p"] == pytest.approx(2 / 70)
    assert not flipped["right"]["held"] and flipped["right"]["p"] == pytest.approx(1.0)


def test_committed_preregistration_is_what_the_inputs_give():
    committed = json.loads((DOCS / "slip_preregistration.json").read_text())
    again = slip.preregistration(json.loads((DOCS / "runs_v2.json").read_text()), _dose(), power=False)
    for key in ("predicted", "low", "high", "se_v2"):
        assert committed["primary"][key] == pytest.approx(again["primary"][key])
    for arm in ("grpo", "drgrpo"):
        assert committed["right"]["per_arm"][arm] == pytest.approx(again["right"]["per_arm"][arm])
        assert committed["slip_end_descriptive"][arm] == pytest.approx(again["slip_end_descriptive"][arm])
    assert again["primary"]["predicted"] == pytest.approx(0.721375)  # the v2 difference (runs_v2.json)
    assert committed["seeds"] == list(range(3001, 3011)) and committed["level"] == 0.05


def test_slip_counts_leave_out_other_wrong_answers():
    from trl_drgrpo.demo.lab_mechanism import rollout_mechanism

    record = {
        "step": 1,
        "answers": ["12"] * 4,
        # a slip that stops, a slip that rambles, a non-slip wrong answer that rambles, a right answer
        "completions": [
            " 3 * 4 = \\boxed{13}.",
            " 3 * 4 = \\boxed{13}. Hmm, wait.",
            " 3 * 4 = \\boxed{20}. Hmm, wait.",
            " 3 * 4 = \\boxed{12}.",
        ],
        "lengths": [10, 15, 15, 10],
        "rewards": [0.0, 0.0, 0.0, 1.0],
        "advantages": [-0.25, -0.25, -0.25, 0.75],
        "group_size": 4,
        "length_normalization": False,
        "budget": 48,
    }
    m = rollout_mechanism(record)
    assert m["counts_slip"] == [1, 2] and m["counts_wrong"] == [2, 3]


def test_committed_slip_runs_recompute_to_the_reported_figures():
    data = json.loads((DOCS / "runs_slip.json").read_text())
    assert len(data["runs"]) == 20 and data["preregistered"]["seeds"] == list(range(3001, 3011))
    stats = slip.slip_statistics(data)
    # docs/bias-lab.md: +0.772 +- 0.139 (SE), every GRPO run above every Dr. GRPO run: p = 2 / C(20, 10)
    assert round(stats["primary"]["difference"], 3) == 0.772 and round(stats["primary"]["se"], 3) == 0.139
    assert stats["primary"]["p"] == pytest.approx(2 / 184756) and stats["primary"]["held"]
    assert round(stats["right"]["difference"], 3) == 0.015 and round(stats["right"]["p"], 2) == 0.73
    assert not stats["right"]["held"] and stats["runs_below_slip_floor"] == ["drgrpo 3002"]
    # lab_dose --recompute hands the slip file to this module
    from trl_drgrpo.demo import lab_dose

    assert (
        lab_dose.main(["--recompute", str(DOCS / "runs_slip.json")])["primary"]["p"] == stats["primary"]["p"]
    )
