"""The bias lab's dose-response analysis and the recomputation of its reported statistics from per-run values.

    python -m trl_drgrpo.demo.lab_dose outputs/bias-lab-dose        # per-run values + report from the runs
    python -m trl_drgrpo.demo.lab_dose --recompute docs/bias_lab/runs_dose.json   # the statistics again
    python -m trl_drgrpo.demo.lab_dose --recompute docs/bias_lab/runs_v2.json     # the v2 lab's p-values

The pre-registered prediction (``recipes/lab/bias_lab_dose.yaml``) is written from the earlier lab's runs
only: ``measured = c + kappa * S`` with c and kappa fixed, and the push ``S(alpha)`` of a graded length term
interpolated between the two measured arms without std normalization (``predicted_signal``). The trend test is
a permutation test of Spearman's rank correlation between alpha and the measured drift (``trend_test``).
All statistics are pure functions of the per-run values, with fixed random seeds where they sample.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PRIMARY = "drift_measured"
SIGNAL = "drift_predicted_signal"
#: per-run values kept in the committed data file (``lab_summary.json`` holds them all)
KEPT = (
    PRIMARY,
    SIGNAL,
    "p_continue_wrong_start",
    "p_continue_wrong_end",
    "p_continue_right_start",
    "p_continue_right_end",
    "wrong_rate_start",
    "wrong_rate_end",
    "greedy_accuracy",
)


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (0 when either side has no spread)."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman needs two equally long samples of at least 2 values")
    return pearson(ranks(x), ranks(y))


def trend_test(
    alphas: Sequence[float], values: Sequence[float], permutations: int = 100_000, seed: int = 0
) -> tuple[float, float]:
    """Spearman's rho of ``values`` on ``alphas`` and its two-sided permutation p-value.

    The values are shuffled over the runs ``permutations`` times (``random.Random(seed)``, so the p-value is
    reproducible); ``p = (1 + #{|rho*| >= |rho|}) / (1 + permutations)``.
    """
    rho = spearman(alphas, values)
    ra, rv = ranks(alphas), ranks(values)
    rng = random.Random(seed)
    hits = 0
    for _ in range(permutations):
        rng.shuffle(rv)
        hits += abs(pearson(ra, rv)) >= abs(rho) - 1e-12
    return rho, (1 + hits) / (1 + permutations)


def length_ratio_factor(alpha: float, ratio: float) -> float:
    """How much of the full length term's push a graded term keeps: ``(1 - ratio^alpha) / (1 - ratio)``.

    First order (``lab_mechanism.predicted_drift``): per wrong response the push is proportional to
    ``w_stop - w_cont`` over the rollout's weight mass ``M``; with ``w = C^(alpha-1) L^-alpha`` and ``M``
    dominated by responses of the stopping length ``L_stop`` (``M ~ C^(alpha-1) L_stop^(1-alpha)``),
    push(alpha) / push(1) = ``(1 - ratio^alpha) / (1 - ratio)``, ``ratio = L_stop / L_cont``. 0 at alpha = 0,
    1 at alpha = 1.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio = L_stop / L_cont must be in (0, 1), got {ratio}")
    return (1.0 - ratio**alpha) / (1.0 - ratio)


def predicted_signal(alpha: float, signal_0: float, signal_1: float, ratio: float) -> float:
    """``S(alpha)`` between the measured pushes of alpha = 0 (``signal_0``) and alpha = 1 (``signal_1``)."""
    return signal_0 + length_ratio_factor(alpha, ratio) * (signal_1 - signal_0)


def prediction(
    alphas: Sequence[float],
    *,
    c: float,
    kappa: float,
    signal_0: float,
    signal_1: float,
    ratios: Sequence[float],
    seed_sd: float,
    fit_se: float,
    seeds: int,
    z: float = 1.96,
) -> dict[float, dict[str, float]]:
    """Per alpha: predicted mean drift over ``seeds`` new runs and a ``z`` interval.

    The centre uses the middle of ``ratios``; the interval is ``z * sqrt(seed_sd^2 / seeds + fit_se^2)``
    around the lowest and highest centre the ``ratios`` give (the ratio's uncertainty added as a range).
    """
    half = z * math.sqrt(seed_sd**2 / seeds + fit_se**2)
    out = {}
    for a in alphas:
        centres = [c + kappa * predicted_signal(a, signal_0, signal_1, r) for r in ratios]
        mid = c + kappa * predicted_signal(a, signal_0, signal_1, sorted(ratios)[len(ratios) // 2])
        out[a] = {"predicted": mid, "low": min(centres) - half, "high": max(centres) + half}
    return out


#: The inputs of the dose-response pre-registration, all from the v2 lab's runs (docs/bias_lab/runs_v2.json) and
#: the task's token lengths; written 2026-12-07 19:24 UTC, before any alpha run.
PREREGISTRATION_INPUTS = {
    "alphas": [0.0, 0.25, 0.5, 1.0],
    "seeds": [2001, 2002, 2003, 2004, 2005, 2006],
    "c": -1.45,  # the v2 line fitted over its 20 runs: measured = c + kappa * S
    "kappa": 14.4,
    "signal_0": -0.002,  # push S of the v2 Dr. GRPO arm (= alpha 0, std off), mean of 8 seeds
    "signal_1": 0.046,  # push S of the v2 length-norm-only arm (= alpha 1, std off), mean of 2 seeds
    # L_stop / L_cont of a wrong answer: 16 tokens stopping, + 9.5 per filler sentence, 1-3 fillers (v2: 1.8-2.2)
    "ratios": [0.36, 0.46, 0.63],
    "seed_sd": 0.472,  # pooled within-arm SD of the v2 runs' drift (7, 7, 1, 1 degrees of freedom)
    "fit_se": 0.146,  # largest standard error of the v2 line at the alphas' S (sigma * sqrt(1/n + (S-mean)^2/Sxx))
    "level": 0.01,
    "permutations": 100_000,
    "permutation_seed": 0,
}


def preregistration(inputs: Mapping = PREREGISTRATION_INPUTS, power_trials: int = 300) -> dict:
    """The committed pre-registration: inputs, per-alpha predictions with 95% intervals and the trend test's
    simulated power at the inputs' seeds (``power_trials`` = 0 skips it)."""
    keys = ("c", "kappa", "signal_0", "signal_1", "ratios", "seed_sd", "fit_se")
    pred = prediction(inputs["alphas"], seeds=len(inputs["seeds"]), **{k: inputs[k] for k in keys})
    out = {**inputs, "predictions": {f"{a:g}": v for a, v in pred.items()}}
    if power_trials:
        means = [pred[a]["predicted"] for a in inputs["alphas"]]
        out["power"] = trend_power(
            means, inputs["alphas"], inputs["seed_sd"], len(inputs["seeds"]), inputs["level"], power_trials
        )
    return out


def trend_power(
    means: Sequence[float],
    alphas: Sequence[float],
    seed_sd: float,
    seeds: int,
    level: float = 0.01,
    trials: int = 400,
    permutations: int = 2000,
    seed: int = 0,
) -> float:
    """Share of simulated experiments (normal runs around ``means``, SD ``seed_sd``) the trend test rejects."""
    rng = random.Random(seed)
    xs = [a for a in alphas for _ in range(seeds)]
    hits = 0
    for t in range(trials):
        ys = [rng.gauss(m, seed_sd) for m in means for _ in range(seeds)]
        hits += trend_test(xs, ys, permutations, seed=t)[1] <= level
    return hits / trials


def permutation_test(a: Sequence[float], b: Sequence[float]) -> float:
    """The v2 lab's exact two-sided permutation test of the difference of means (``lab_report``)."""
    from .lab_report import permutation_test as exact

    return exact(a, b)


# ---------------------------------------------------------------- per-run data and the report
def per_run_rows(summary: Mapping) -> list[dict]:
    """One row per run (arm, alpha, seed and the ``KEPT`` values) from a ``lab_summary.json``."""
    from .lab import arm_alpha

    rows = []
    for arm, seeds in summary["per_run"].items():
        for seed, values in sorted(seeds.items(), key=lambda kv: int(kv[0])):
            rows.append(
                {"arm": arm, "alpha": arm_alpha(arm), "seed": int(seed)} | {k: values.get(k) for k in KEPT}
            )
    return rows


def dose_statistics(data: Mapping) -> dict:
    """The dose-response report's statistics from a per-run data file's content (``runs`` + ``preregistered``)."""
    runs = [r for r in data["runs"] if r.get(PRIMARY) is not None]
    pre = data["preregistered"]
    alphas = sorted({r["alpha"] for r in runs})
    rho, p = trend_test(
        [r["alpha"] for r in runs], [r[PRIMARY] for r in runs], pre["permutations"], pre["permutation_seed"]
    )
    table = []
    for a in alphas:
        values = [r[PRIMARY] for r in runs if r["alpha"] == a]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        band = pre["predictions"][f"{a:g}"]
        secondary = {
            k: _mean([r.get(k) for r in runs if r["alpha"] == a])
            for k in ("p_continue_wrong_end", "p_continue_right_end", "wrong_rate_end", SIGNAL)
        }
        table.append(
            {
                "alpha": a,
                "seeds": len(values),
                "measured_mean": mean,
                "measured_sd": sd,
                "measured_se": sd / math.sqrt(len(values)),
                "predicted": band["predicted"],
                "low": band["low"],
                "high": band["high"],
                "inside": band["low"] <= mean <= band["high"],
                **secondary,
            }
        )
    return {
        "spearman_rho": rho,
        "trend_p": p,
        "level": pre["level"],
        "significant": p <= pre["level"],
        "rho_positive": rho > 0,
        "all_inside": all(row["inside"] for row in table),
        "table": table,
    }


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def v2_statistics(data: Mapping) -> dict:
    """The v2 lab's pre-registered test (and its seed-0-free variant) from its per-seed drifts."""
    a, b = data["drift_measured"]["grpo"], data["drift_measured"]["drgrpo"]
    return {
        "difference": sum(a) / len(a) - sum(b) / len(b),
        "p_seeds_0_7": permutation_test(a, b),
        "p_seeds_1_7": permutation_test(a[1:], b[1:]),
    }


def dose_markdown(stats: Mapping) -> str:
    """The predicted-vs-measured table and the trend test as markdown."""
    lines = [
        "| alpha | seeds | predicted Δ log P (95% interval) | measured mean ± SD (SE) | inside | "
        "P(continue \\| wrong) end | P(continue \\| right) end | wrong rate end | push S |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in stats["table"]:
        lines.append(
            f"| {r['alpha']:g} | {r['seeds']} | {r['predicted']:+.2f} ({r['low']:+.2f}, {r['high']:+.2f}) | "
            f"{r['measured_mean']:+.3f} ± {r['measured_sd']:.3f} ({r['measured_se']:.3f}) | "
            f"{'yes' if r['inside'] else 'no'} | {_fmt(r['p_continue_wrong_end'])} | "
            f"{_fmt(r['p_continue_right_end'])} | {_fmt(r['wrong_rate_end'])} | {_fmt(r[SIGNAL], '+.4f')} |"
        )
    verdict = (
        "held" if stats["significant"] and stats["rho_positive"] and stats["all_inside"] else "did not hold"
    )
    lines += [
        "",
        f"Trend test: Spearman rho = {stats['spearman_rho']:+.3f}, two-sided permutation p = "
        f"{stats['trend_p']:.4f} (level {stats['level']}). Prediction (rho > 0 at p <= {stats['level']} and every "
        f"alpha's mean inside its interval): **{verdict}**.",
    ]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "output_dir", nargs="?", help="a finished `lab --alphas` folder (its lab_summary.json)"
    )
    parser.add_argument("--preregister", action="store_true", help="print the pre-registration JSON")
    parser.add_argument("--recompute", help="a committed per-run data file (docs/bias_lab/runs_*.json)")
    parser.add_argument(
        "--preregistration",
        default="docs/bias_lab/dose_preregistration.json",
        help="the committed predictions",
    )
    args = parser.parse_args(argv)
    if args.preregister:
        data = preregistration()
        print(json.dumps(data, indent=2))
        return data
    if args.recompute:
        data = json.loads(Path(args.recompute).read_text())
        if "slip_rate" in data.get("preregistered", {}):  # the slip experiment's file
            from .lab_slip_stats import main as slip_main

            return slip_main(["--recompute", args.recompute])
        stats = v2_statistics(data) if "drift_measured" in data else dose_statistics(data)
        if "table" in stats:
            print(dose_markdown(stats))
        else:
            print(json.dumps(stats, indent=2))
        return stats
    if not args.output_dir:
        parser.error("give a lab output folder or --recompute FILE")
    out = Path(args.output_dir)
    summary_path = out / "lab_summary.json"
    if not summary_path.is_file():
        parser.error(f"{summary_path} not found: run the lab first (make bias-lab-dose)")
    data = {
        "preregistered": json.loads(Path(args.preregistration).read_text()),
        "runs": per_run_rows(json.loads(summary_path.read_text())),
    }
    (out / "runs_dose.json").write_text(json.dumps(data, indent=2) + "\n")
    stats = dose_statistics(data)
    text = dose_markdown(stats)
    (out / "dose_report.md").write_text(text)
    print(text)
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
