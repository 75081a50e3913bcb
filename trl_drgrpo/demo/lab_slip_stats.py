"""The bias lab's slip experiment (``make bias-lab-slip``): its pre-registration and its statistics.

    python -m trl_drgrpo.demo.lab_slip_stats --preregister            # the pre-registration JSON
    python -m trl_drgrpo.demo.lab_slip_stats outputs/bias-lab-slip    # per-run values + report from the runs
    python -m trl_drgrpo.demo.lab_slip_stats --recompute docs/bias_lab/runs_slip.json   # the statistics again

GRPO vs Dr. GRPO with slips injected at a fixed rate (``lab_slips``), so that every run's end window holds
hundreds of wrong answers. Primary (of this secondary family): ``drift_slip``, the lab's ``drift_measured``
computed over slips (gold + 1) only. Secondary: P(continue | right) at the end. Both are tested with the
lab's exact two-sided permutation test of the difference of means over seeds.

Every prediction comes from committed data only: the v2 lab's per-seed drifts (``docs/bias_lab/runs_v2.json``),
its table in ``docs/bias-lab.md`` and the dose-response runs (``docs/bias_lab/runs_dose.json``), the latter to
split their seed spread into end-window counting noise and the rest (``trajectory_variance``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .lab_report import mean_std as mean_sd  # mean and sample SD
from .lab_report import permutation_test

PRIMARY = "drift_slip"
RIGHT = "p_continue_right_end"
#: per-run values kept in the committed data file
KEPT = (
    PRIMARY,
    "p_continue_slip_start",
    "p_continue_slip_end",
    "p_continue_right_start",
    RIGHT,
    "drift_measured",
    "slip_rate_start",
    "slip_rate_end",
    "wrong_rate_start",
    "wrong_rate_end",
    "greedy_accuracy",
)
ARMS = ("grpo", "drgrpo")
#: manipulation check, pre-registered in docs/bias-lab.md: every run's end-window slip share at least this
SLIP_SHARE_FLOOR = 0.25
Z95 = 1.959964

#: Inputs of the pre-registration, written 2026-12-07 22:40-22:50 UTC before any run with slips (N = 10 set at 22:49 from the timing of one 4-step smoke run) (sources inline).
PREREGISTRATION_INPUTS = {
    "slip_rate": 0.3,
    "seeds": [3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009, 3010],
    "level": 0.05,
    "window_responses": 640,  # 10 rollouts x 64 responses per start/end window
    # v2 lab table (docs/bias-lab.md), mean and SD over 8 seeds: end-window P(continue | wrong) and P(continue | right)
    "v2_seeds": 8,
    "v2_p_continue_wrong_end": {"grpo": [0.223, 0.107], "drgrpo": [0.084, 0.032]},
    "v2_p_continue_right_end": {"grpo": [0.050, 0.095], "drgrpo": [0.007, 0.006]},
    "base_p_continue_slip": 0.39,  # the slip check in docs/bias-lab.md (base, seed 5, R = 0.5)
    "base_wrong_rate": 0.19,  # the decision base's own wrong rate (docs/bias-lab.md)
    "power_trials": 400,
    "power_permutations": 2000,
}


# ---------------------------------------------------------------- statistics (pure)
def welch_se(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of ``mean(a) - mean(b)`` (unpooled variances)."""
    return math.sqrt(mean_sd(a)[1] ** 2 / len(a) + mean_sd(b)[1] ** 2 / len(b))


def log_rate_variance(p: float, n: float, floor: float = 0.5) -> float:
    """Delta-method variance of ``log((hits + floor) / (n + 2 floor))`` for ``n`` events at rate ``p``
    (``lab_mechanism.log_drift``'s window estimate): ``(1 - q) / ((n + 2 floor) q)``, ``q`` the floored rate."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n >= 0 and p in [0, 1], got n={n}, p={p}")
    q = (p * n + floor) / (n + 2 * floor)
    return (1.0 - q) / ((n + 2 * floor) * q)


def trajectory_variance(runs: Sequence[Mapping], window_responses: int, group: str = "alpha") -> float:
    """Seed variance of ``drift_measured`` that end/start-window counting noise does not explain.

    Per group (``group`` key of the runs): sample variance of the drift minus the mean delta-method variance
    of its two windows (events = wrong rate x ``window_responses``); pooled over groups by degrees of
    freedom, floored at 0.
    """
    groups: dict = {}
    for r in runs:
        groups.setdefault(r[group], []).append(r)
    num = dof = 0.0
    for rows in groups.values():
        if len(rows) < 2:
            continue
        counting = [
            log_rate_variance(r["p_continue_wrong_end"], r["wrong_rate_end"] * window_responses)
            + log_rate_variance(r["p_continue_wrong_start"], r["wrong_rate_start"] * window_responses)
            for r in rows
        ]
        var = mean_sd([r["drift_measured"] for r in rows])[1] ** 2
        num += (len(rows) - 1) * (var - sum(counting) / len(counting))
        dof += len(rows) - 1
    if not dof:
        raise ValueError("trajectory_variance needs a group with at least 2 runs")
    return max(0.0, num / dof)


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided permutation p of ``mean(a) - mean(b)`` (the lab's test, ``lab_report``)."""
    return permutation_test(a, b)


def _mc_permutation_p(a: list[float], b: list[float], permutations: int, rng: random.Random) -> float:
    pooled, n = a + b, len(a)
    observed = abs(sum(a) / n - sum(b) / len(b))
    hits = 0
    for _ in range(permutations):
        rng.shuffle(pooled)
        hits += abs(sum(pooled[:n]) / n - sum(pooled[n:]) / len(b)) >= observed - 1e-12
    return (1 + hits) / (1 + permutations)


def simulated_power(
    mean_a: float,
    sd_a: float,
    mean_b: float,
    sd_b: float,
    seeds: int,
    level: float,
    trials: int = 400,
    permutations: int = 2000,
    seed: int = 0,
    lower: float | None = None,
) -> float:
    """Share of simulated experiments (``seeds`` normal runs per arm, clipped below at ``lower``) in which the
    two-sided permutation test (Monte Carlo, ``permutations``) gives p <= ``level`` with the sign of
    ``mean_a - mean_b``."""
    rng = random.Random(seed)
    sign = 1.0 if mean_a >= mean_b else -1.0
    hits = 0
    for _ in range(trials):
        a = [rng.gauss(mean_a, sd_a) for _ in range(seeds)]
        b = [rng.gauss(mean_b, sd_b) for _ in range(seeds)]
        if lower is not None:
            a, b = [max(lower, x) for x in a], [max(lower, x) for x in b]
        right_sign = sign * (sum(a) - sum(b)) > 0
        hits += right_sign and _mc_permutation_p(a, b, permutations, rng) <= level
    return hits / trials


# ---------------------------------------------------------------- the pre-registration
def preregistration(
    v2: Mapping, dose: Mapping, inputs: Mapping = PREREGISTRATION_INPUTS, power: bool = True
) -> dict:
    """Predictions with 95% intervals and power, from the v2 per-seed drifts (``v2``: runs_v2.json's content),
    the dose runs (``dose``: runs_dose.json's content) and ``inputs``.

    Primary, ``drift_slip`` GRPO - Dr. GRPO: centred on the v2 difference of ``drift_measured`` (same arms,
    same metric over wrong answers, which were mostly slips); the interval adds the v2 difference's SE and
    the new experiment's SE under the v2 seed spread (the conservative case). Power is given for that spread
    and for the spread expected with slips: the dose runs' trajectory variance plus the counting noise of
    windows with ``slip_rate`` x ``window_responses`` injected slips.
    """
    n, level, rows = len(inputs["seeds"]), inputs["level"], inputs["window_responses"]
    g, d = v2["drift_measured"]["grpo"], v2["drift_measured"]["drgrpo"]
    centre, se_v2 = mean_sd(g)[0] - mean_sd(d)[0], welch_se(g, d)
    sd_v2 = math.sqrt((mean_sd(g)[1] ** 2 + mean_sd(d)[1] ** 2) / 2)
    half = Z95 * math.sqrt(se_v2**2 + 2 * sd_v2**2 / n)  # new SE: sqrt(sd^2/n + sd^2/n)
    traj = trajectory_variance(dose["runs"], rows)
    start_slips = (inputs["slip_rate"] + (1 - inputs["slip_rate"]) * inputs["base_wrong_rate"]) * rows
    end_slips = inputs["slip_rate"] * rows  # injected only: RL removes the base's own slips
    sd_slip = {
        arm: math.sqrt(
            traj
            + log_rate_variance(inputs["v2_p_continue_wrong_end"][arm][0], end_slips)
            + log_rate_variance(inputs["base_p_continue_slip"], start_slips)
        )
        for arm in ARMS
    }
    out = {**inputs, "derived": {"trajectory_variance_dose": traj, "sd_v2_pooled": sd_v2}}
    out["primary"] = {
        "metric": PRIMARY,
        "difference": "grpo - drgrpo",
        "predicted_sign": "+",
        "predicted": centre,
        "low": centre - half,
        "high": centre + half,
        "se_v2": se_v2,
        "sd_expected_with_slips": sd_slip,
        "test": "exact two-sided permutation test of the difference of means over seeds",
    }
    right = inputs["v2_p_continue_right_end"]
    out["right"] = {
        "metric": RIGHT,
        "predicted_sign": "+",
        "test": "exact two-sided permutation test of the difference of means over seeds",
        "per_arm": {arm: _band(*right[arm], inputs["v2_seeds"], n) for arm in ARMS},
    }
    diff = right["grpo"][0] - right["drgrpo"][0]
    half_r = Z95 * math.sqrt(
        (right["grpo"][1] ** 2 + right["drgrpo"][1] ** 2) * (1 / inputs["v2_seeds"] + 1 / n)
    )
    out["right"]["difference"] = {"predicted": diff, "low": diff - half_r, "high": diff + half_r}
    slip_end = inputs["v2_p_continue_wrong_end"]
    out["slip_end_descriptive"] = {arm: _band(*slip_end[arm], inputs["v2_seeds"], n) for arm in ARMS}
    if power:
        trials, perms = inputs["power_trials"], inputs["power_permutations"]
        out["primary"]["power_v2_spread"] = simulated_power(
            centre, sd_v2, 0.0, sd_v2, n, level, trials, perms, seed=1
        )
        out["primary"]["power_expected_spread"] = simulated_power(
            centre, sd_slip["grpo"], 0.0, sd_slip["drgrpo"], n, level, trials, perms, seed=2
        )
        out["primary"]["power_half_effect_v2_spread"] = simulated_power(
            centre / 2, sd_v2, 0.0, sd_v2, n, level, trials, perms, seed=3
        )
        out["right"]["power_v2_spread"] = simulated_power(
            *right["grpo"], *right["drgrpo"], n, level, trials, perms, seed=4, lower=0.0
        )  # rates clipped at 0: the v2 SD (0.095 at mean 0.050) comes from a few high seeds, so this overstates
        out["right"]["power_v2_spread_unclipped"] = simulated_power(
            *right["grpo"], *right["drgrpo"], n, level, trials, perms, seed=5
        )
    return out


def _band(mean: float, sd: float, old: int, new: int) -> dict[str, float]:
    """A new ``new``-run mean predicted from an ``old``-run mean: ``mean +- 1.96 sd sqrt(1/old + 1/new)``,
    floored at 0 (a rate)."""
    half = Z95 * sd * math.sqrt(1.0 / old + 1.0 / new)
    return {"predicted": mean, "low": max(0.0, mean - half), "high": mean + half}


# ---------------------------------------------------------------- per-run data and the report
def per_run_rows(summary: Mapping) -> list[dict]:
    """One row per run (arm, seed and the ``KEPT`` values) of a ``lab_summary.json``."""
    return [
        {"arm": arm, "seed": int(seed)} | {k: values.get(k) for k in KEPT}
        for arm, seeds in summary["per_run"].items()
        for seed, values in sorted(seeds.items(), key=lambda kv: int(kv[0]))
    ]


def slip_statistics(data: Mapping) -> dict:
    """The report's statistics from a per-run data file's content (``runs`` + ``preregistered``)."""
    pre, runs = data["preregistered"], data["runs"]
    level = pre["level"]

    def values(arm: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["arm"] == arm and r.get(key) is not None]

    out: dict = {"level": level, "arms": {}}
    for arm in ARMS:
        entry = {"seeds": len(values(arm, PRIMARY))}
        for key in (PRIMARY, RIGHT, "p_continue_slip_start", "p_continue_slip_end", "slip_rate_end"):
            vs = values(arm, key)
            if vs:
                m, sd = mean_sd(vs)
                entry[key] = {"mean": m, "sd": sd, "se": sd / math.sqrt(len(vs)), "min": min(vs)}
        band = pre["slip_end_descriptive"][arm]
        end = entry.get("p_continue_slip_end")
        entry["slip_end_inside"] = end is not None and band["low"] <= end["mean"] <= band["high"]
        band = pre["right"]["per_arm"][arm]
        end = entry.get(RIGHT)
        entry["right_end_inside"] = end is not None and band["low"] <= end["mean"] <= band["high"]
        out["arms"][arm] = entry
    out["runs_below_slip_floor"] = [
        f"{r['arm']} {r['seed']}"
        for r in runs
        if r.get("slip_rate_end") is not None and r["slip_rate_end"] < SLIP_SHARE_FLOOR
    ]
    for name, key, spec in (("primary", PRIMARY, pre["primary"]), ("right", RIGHT, pre["right"])):
        a, b = values("grpo", key), values("drgrpo", key)
        diff, p = mean_sd(a)[0] - mean_sd(b)[0], permutation_p(a, b)
        band = spec if name == "primary" else spec["difference"]
        out[name] = {
            "metric": key,
            "difference": diff,
            "se": welch_se(a, b),
            "p": p,
            "sign_as_predicted": diff > 0,
            "significant": p <= level,
            "held": diff > 0 and p <= level,
            "inside_interval": band["low"] <= diff <= band["high"],
            "predicted": band["predicted"],
            "low": band["low"],
            "high": band["high"],
        }
    return out


def slip_markdown(stats: Mapping) -> str:
    """Predicted vs measured for every pre-registered quantity."""
    p, r = stats["primary"], stats["right"]
    lines = [
        "| quantity | predicted (95% interval) | measured (± 1 SE) | p | held |",
        "|---|---|---|---|---|",
    ]
    for name, s in (
        ("Δ log P(continue \\| slip), GRPO − Dr. GRPO", p),
        ("P(continue \\| right) end, GRPO − Dr. GRPO", r),
    ):
        lines.append(
            f"| {name} | {s['predicted']:+.3f} ({s['low']:+.3f}, {s['high']:+.3f}) | {s['difference']:+.3f} ± "
            f"{s['se']:.3f} | {_p(s['p'])} | {'yes' if s['held'] else 'no'} (sign {'+' if s['difference'] > 0 else '−'}, "
            f"{'inside' if s['inside_interval'] else 'outside'} the interval) |"
        )
    lines += [
        "",
        "| arm | seeds | Δ log P(continue \\| slip) mean ± SD (SE) | P(continue \\| slip) start → end | "
        "P(continue \\| right) end mean ± SD (SE) (vs its predicted interval) | slip share end mean (lowest run) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, e in stats["arms"].items():
        lines.append(
            f"| {arm} | {e['seeds']} | {_msd(e.get(PRIMARY), '+.3f')} | {_m(e.get('p_continue_slip_start'))} → "
            f"{_m(e.get('p_continue_slip_end'))} ({'inside' if e['slip_end_inside'] else 'outside'} the predicted "
            f"interval) | {_msd(e.get(RIGHT), '.4f')} ({'inside' if e['right_end_inside'] else 'outside'}) | {_m(e.get('slip_rate_end'))} ({_low(e.get('slip_rate_end'))}) |"
        )
    lines += [
        "",
        f"Tests: exact two-sided permutation tests over seeds, level {stats['level']}; a prediction holds if the "
        "difference has the predicted sign (+) and p <= level.",
        f"Manipulation check (end-window slip share >= {SLIP_SHARE_FLOOR} in every run): "
        + (
            "held."
            if not stats["runs_below_slip_floor"]
            else f"failed in {', '.join(stats['runs_below_slip_floor'])}."
        ),
    ]
    return "\n".join(lines) + "\n"


def _m(stat: Mapping | None) -> str:
    return "-" if stat is None else f"{stat['mean']:.3f}"


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def _low(stat: Mapping | None) -> str:
    return "-" if stat is None else f"{stat['min']:.3f}"


def _msd(stat: Mapping | None, spec: str) -> str:
    if stat is None:
        return "-"
    return f"{format(stat['mean'], spec)} ± {stat['sd']:.3f} ({stat['se']:.3f})"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "output_dir", nargs="?", help="a finished `lab --slip_rate` folder (its lab_summary.json)"
    )
    parser.add_argument("--preregister", action="store_true", help="print the pre-registration JSON")
    parser.add_argument("--recompute", help="a committed per-run data file (docs/bias_lab/runs_slip.json)")
    parser.add_argument("--preregistration", default="docs/bias_lab/slip_preregistration.json")
    parser.add_argument("--v2", default="docs/bias_lab/runs_v2.json", help="the v2 lab's per-seed data")
    parser.add_argument("--dose", default="docs/bias_lab/runs_dose.json", help="the dose runs' per-run data")
    args = parser.parse_args(argv)
    if args.preregister:
        data = preregistration(_read(args.v2), _read(args.dose))
        print(json.dumps(data, indent=2))
        return data
    if args.recompute:
        stats = slip_statistics(_read(args.recompute))
        print(slip_markdown(stats))
        return stats
    if not args.output_dir:
        parser.error("give a lab output folder, --recompute FILE or --preregister")
    summary = Path(args.output_dir) / "lab_summary.json"
    if not summary.is_file():
        parser.error(f"{summary} not found: run the lab first (make bias-lab-slip)")
    data = {"preregistered": _read(args.preregistration), "runs": per_run_rows(_read(summary))}
    out = Path(args.output_dir)
    (out / "runs_slip.json").write_text(json.dumps(data, indent=2) + "\n")
    stats = slip_statistics(data)
    text = slip_markdown(stats)
    (out / "slip_report.md").write_text(text)
    print(text)
    return stats


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found")
    return json.loads(path.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
