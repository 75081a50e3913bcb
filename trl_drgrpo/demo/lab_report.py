"""The bias lab's report: per-run numbers from the training logs, per-arm aggregates, a permutation test.

Pure functions over ``log_history`` lists (``trainer_state.json``) and the held-out evaluations, so a test
can recompute every number of the report from the run logs. ``write_report`` writes ``report.md`` and
``lab_summary.json`` and draws the overlay plots with ``trl_drgrpo.analysis.dynamics``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

REWARD = "reward"
CORRECT_LENGTH = "drgrpo/correct_mean_length"
INCORRECT_LENGTH = "drgrpo/incorrect_mean_length"
TRUNCATED = "drgrpo/truncated_fraction"
ZERO_SPREAD = "drgrpo/zero_std_group_fraction"


def values_of(log_history: Sequence[Mapping], key: str) -> list[float]:
    """The logged values of ``key``, in step order (entries without it are skipped)."""
    return [float(e[key]) for e in log_history if key in e]


def start_end(values: Sequence[float], window: int) -> tuple[float, float]:
    """Mean of the first and of the last ``window`` values (at most half of them each)."""
    if not values:
        raise ValueError("no values to average")
    w = max(1, min(window, len(values) // 2))
    return sum(values[:w]) / w, sum(values[-w:]) / w


def run_numbers(log_history: Sequence[Mapping], window: int) -> dict[str, float | None]:
    """One run's figures: reward and lengths at the start and the end, and the end/start length ratios."""
    out: dict[str, float | None] = {}
    for name, key in (
        ("reward", REWARD),
        ("correct_length", CORRECT_LENGTH),
        ("incorrect_length", INCORRECT_LENGTH),
        ("truncated", TRUNCATED),
        ("zero_spread", ZERO_SPREAD),
    ):
        values = values_of(log_history, key)
        start, end = start_end(values, window) if values else (None, None)
        out[f"{name}_start"], out[f"{name}_end"] = start, end
    for name in ("correct_length", "incorrect_length"):
        start, end = out[f"{name}_start"], out[f"{name}_end"]
        out[f"{name}_ratio"] = end / start if start and end is not None else None
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def permutation_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided permutation p-value of ``mean(a) - mean(b)`` over every relabelling of the pooled values.

    With n values per side the smallest attainable p is ``2 / C(2n, n)`` (0.1 for n = 3).
    """
    if not a or not b:
        raise ValueError("both samples need at least one value")
    pooled, n = list(a) + list(b), len(a)
    observed = abs(sum(a) / n - sum(b) / len(b))
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        inside = set(chosen)
        left = [pooled[i] for i in chosen]
        right = [pooled[i] for i in range(len(pooled)) if i not in inside]
        diff = abs(sum(left) / len(left) - sum(right) / len(right))
        hits += diff >= observed - 1e-12
        total += 1
    return hits / total


def arm_table(per_run: Mapping[str, Mapping[str, Mapping]], labels: Mapping[str, str]) -> list[dict]:
    """Per arm, mean and std over its seeds of each figure (``per_run[arm][seed]`` -> figures)."""
    rows = []
    for arm, seeds in per_run.items():
        row: dict = {"arm": arm, "label": labels.get(arm, arm), "seeds": sorted(seeds)}
        for key in (
            "reward_end",
            "greedy_accuracy",
            "incorrect_length_ratio",
            "correct_length_ratio",
            "incorrect_length_end",
            "truncated_end",
        ):
            values = [r[key] for r in seeds.values() if r.get(key) is not None]
            row[key] = mean_std(values) if values else None
        rows.append(row)
    return rows


def _cell(stat: tuple[float, float] | None, fmt: str) -> str:
    return "n/a" if stat is None else f"{stat[0]:{fmt}} ± {stat[1]:{fmt}}"


def markdown(rows: Sequence[Mapping], tests: Mapping[str, float] | None, base_accuracy: float | None) -> str:
    """The Markdown table per arm (mean ± std over seeds) and the GRPO vs Dr. GRPO test lines."""
    lines = [
        "| arm | seeds | final reward | held-out greedy accuracy | incorrect length end/start "
        "| correct length end/start | incorrect length at end (tokens) | truncated at end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {len(r['seeds'])} | {_cell(r['reward_end'], '.3f')} "
            f"| {_cell(r['greedy_accuracy'], '.3f')} | {_cell(r['incorrect_length_ratio'], '.2f')} "
            f"| {_cell(r['correct_length_ratio'], '.2f')} | {_cell(r['incorrect_length_end'], '.1f')} "
            f"| {_cell(r['truncated_end'], '.3f')} |"
        )
    if base_accuracy is not None:
        lines.append(f"\nBase model held-out greedy accuracy: {base_accuracy:.3f}.")
    if tests:
        lines.append("\nGRPO vs Dr. GRPO, exact two-sided permutation test over seeds:")
        for key, p in tests.items():
            lines.append(f"- {key}: p = {p:.3f}")
    return "\n".join(lines) + "\n"


def build_report(
    histories: Mapping[str, Mapping[str, Sequence[Mapping]]],
    accuracies: Mapping[str, Mapping[str, float]],
    *,
    labels: Mapping[str, str],
    window: int,
    base_accuracy: float | None = None,
    mechanisms: Mapping[str, Mapping[str, Sequence[Mapping]]] | None = None,
    variant: str = "decision",
) -> dict:
    """Everything of the report from the logs (``histories[arm][seed]``), held-out accuracies and the
    per-rollout mechanism figures (``mechanisms[arm][seed]``, from ``load_mechanism``)."""
    per_run = {
        arm: {
            seed: {**run_numbers(history, window), "greedy_accuracy": accuracies.get(arm, {}).get(seed)}
            for seed, history in seeds.items()
        }
        for arm, seeds in histories.items()
    }
    mechanism = None
    if mechanisms:
        for arm, seeds in mechanisms.items():
            for seed, steps in seeds.items():
                per_run[arm][seed].update(mechanism_numbers(steps, window))
        mechanism = mechanism_summary(per_run, mechanisms, labels, window)
    rows = arm_table(per_run, labels)
    tests = {}
    if "grpo" in per_run and "drgrpo" in per_run:
        for key in ("incorrect_length_ratio", "reward_end", "greedy_accuracy"):
            a = [r[key] for r in per_run["grpo"].values() if r.get(key) is not None]
            b = [r[key] for r in per_run["drgrpo"].values() if r.get(key) is not None]
            if a and b:
                tests[key] = permutation_test(a, b)
    text = markdown(rows, tests, base_accuracy)
    if mechanism is not None:
        text = mechanism["markdown"] + "\n## Aggregate lengths (the first lab's table)\n\n" + text
    return {
        "window": window,
        "variant": variant,
        "per_run": per_run,
        "arms": rows,
        "permutation_p": tests,
        "mechanism": {k: v for k, v in (mechanism or {}).items() if k != "markdown"} or None,
        "base_greedy_accuracy": base_accuracy,
        "markdown": text,
    }


def write_report(
    output_dir: str | os.PathLike,
    run_dirs: Mapping[str, Mapping[str, str | os.PathLike]],
    report: Mapping,
    *,
    labels: Mapping[str, str],
    title: str = "Bias lab",
    mechanisms: Mapping[str, Mapping[str, Sequence[Mapping]]] | None = None,
) -> dict:
    """``report.md`` + ``lab_summary.json`` in ``output_dir``, overlay plots (per arm, mean ± std) in ``plots/``."""
    from ..analysis.dynamics import dynamics

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = {labels.get(arm, arm): [str(p) for p in seeds.values()] for arm, seeds in run_dirs.items()}
    summary = dynamics(
        output_dir=out / "plots",
        groups=groups,
        window=report["window"],
        smooth=5,
        title=title,
        show_progress=False,
    )
    if mechanisms and report.get("mechanism"):
        mechanism_plots(out, mechanisms, labels, report["mechanism"]["kappa"])
    plots = sorted(str(Path(p).relative_to(out)) for p in (out / "plots").glob("*.png"))
    text = f"# {title}\n\n" + report["markdown"]
    text += f"\nStart/end values: mean of the first/last {report['window']} logged steps of each run.\n"
    text += "".join(f"\n![{Path(p).stem}]({p})\n" for p in plots)
    (out / "report.md").write_text(text)
    data = {k: v for k, v in report.items() if k != "markdown"}
    data["plots"], data["dynamics_groups"] = plots, sorted(summary.get("groups", {}))
    (out / "lab_summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


# ---------------------------------------------------------------- mechanism: the stop/continue decision
PRIMARY = "drift_measured"
Z_001 = 2.5758  # two-sided 1% point of the normal distribution


def load_mechanism(run_dir: str | os.PathLike) -> list[dict]:
    """Per-rollout mechanism figures of one run, from its ``rollouts.jsonl`` (empty if it has none)."""
    from .lab_mechanism import rollout_mechanism
    from .lab_train import ROLLOUTS_FILE

    path = Path(run_dir) / ROLLOUTS_FILE
    if not path.is_file():
        return []
    with open(path) as f:
        return [rollout_mechanism(json.loads(line)) for line in f if line.strip()]


def window_weights(n_rollouts: int, window: int) -> list[float]:
    """How much the update after rollout t moves (mean of the last ``w`` rollouts) - (mean of the first ``w``).

    An update after rollout t changes every later rollout, so it counts ``min(w, T-1-t) - max(0, w-1-t)``
    times out of ``w``; ``w`` is ``window`` capped at half the rollouts, as in ``start_end``.
    """
    w = max(1, min(window, n_rollouts // 2))
    return [(min(w, n_rollouts - 1 - t) - max(0, w - 1 - t)) / w for t in range(n_rollouts)]


def mechanism_numbers(steps: Sequence[Mapping], window: int) -> dict[str, float | None]:
    """One run's decision figures: P(continue | wrong) at start and end (pooled over ``window`` rollouts),
    its measured log change, the predicted drift summed over the same span, and the other rates."""
    from .lab_mechanism import log_drift, pooled_rate

    if not steps:
        return {}
    counts = [s["counts_wrong"] for s in steps]
    w = max(1, min(window, len(steps) // 2))
    out: dict[str, float | None] = {
        "p_continue_wrong_start": pooled_rate(counts[:w]),
        "p_continue_wrong_end": pooled_rate(counts[-w:]),
        PRIMARY: log_drift(counts, window),
        "drift_predicted_signal": sum(
            c * s["pred_drift"] for c, s in zip(window_weights(len(steps), window), steps, strict=True)
        ),
        "signal_per_step": sum(s["pred_drift"] for s in steps) / len(steps),
    }
    slips = [s.get("counts_slip", [0, 0]) for s in steps]  # records older than the slip option: none
    if any(c[1] for c in slips):  # the same drift after a slip (gold + 1), for runs with --slip_rate
        out["p_continue_slip_start"] = pooled_rate(slips[:w])
        out["p_continue_slip_end"] = pooled_rate(slips[-w:])
        out["drift_slip"] = log_drift(slips, window)
    for key in (
        "p_continue_right",
        "wrong_rate",
        "slip_rate",
        "fillers_after_wrong",
        "boxed_rate",
    ):
        values = [s[key] for s in steps if s.get(key) is not None]
        start, end = start_end(values, window) if values else (None, None)
        out[f"{key}_start"], out[f"{key}_end"] = start, end
    return out


def fit_line(signals: Sequence[float], measured: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares ``measured ~ c + kappa * signal`` over runs; ``(c, kappa)``, None without spread in signal.

    ``c`` is the drift every arm shares (whatever moves the decision besides the length term: the rest of
    the RL update, Adam's per-parameter scaling, parameters shared with other contexts); ``kappa`` converts
    the first-order push into the measured change. Only ``kappa`` separates the arms.
    """
    n = len(signals)
    if n < 2 or n != len(measured):
        return None
    ms, mm = sum(signals) / n, sum(measured) / n
    sxx = sum((x - ms) ** 2 for x in signals)
    if sxx <= 0:
        return None
    kappa = sum((x - ms) * (y - mm) for x, y in zip(signals, measured, strict=True)) / sxx
    return mm - kappa * ms, kappa


def steps_needed(
    effect_per_step: float, seed_std: float, steps: int, seeds: int, z: float = Z_001
) -> float | None:
    """Steps for the arms' mean difference to reach ``z`` standard errors with ``seeds`` per arm.

    The difference grows like ``effect_per_step * T``; the seed spread (``seed_std`` at ``steps``) is taken
    to grow like ``sqrt(T)`` (a random walk), so ``T = steps * (z * seed_std * sqrt(2/seeds) /
    (effect_per_step * steps))**2``. None when the predicted effect is zero or of the wrong sign.
    """
    if effect_per_step <= 0 or seed_std <= 0 or steps < 1 or seeds < 1:
        return None  # no effect to grow, or no spread to estimate it against (one seed)
    z_now = effect_per_step * steps / (seed_std * math.sqrt(2.0 / seeds))
    return steps * (z / z_now) ** 2


def heldout_gain(
    per_run: Mapping[str, Mapping[str, Mapping]], tested: Sequence[str] = ("grpo", "drgrpo")
) -> tuple[float, int] | None:
    """``(kappa, runs)`` fitted on the runs of the arms outside the primary test only (the single-bias arms).

    A prediction of the tested difference that none of the tested runs informed; None without two such runs
    that differ in their predicted signal.
    """
    runs = [
        (r["drift_predicted_signal"], r[PRIMARY])
        for arm, seeds in per_run.items()
        if arm not in tested
        for r in seeds.values()
        if r.get(PRIMARY) is not None and r.get("drift_predicted_signal") is not None
    ]
    fit = fit_line([x for x, _ in runs], [y for _, y in runs])
    return (fit[1], len(runs)) if fit else None


def mechanism_summary(
    per_run: Mapping[str, Mapping[str, Mapping]],
    mechanisms: Mapping[str, Mapping[str, Sequence[Mapping]]],
    labels: Mapping[str, str],
    window: int,
) -> dict:
    """Per arm: the decision table, predicted vs measured drift (one gain over all runs), the pre-registered
    test (GRPO vs Dr. GRPO on ``drift_measured``), the steps it implies, and the update share per bucket."""
    runs = [(arm, seed, r) for arm, seeds in per_run.items() for seed, r in seeds.items() if PRIMARY in r]
    fit = fit_line([r["drift_predicted_signal"] for _, _, r in runs], [r[PRIMARY] or 0.0 for _, _, r in runs])
    common, kappa = fit if fit else (None, None)
    arms = {}
    for arm, seeds in per_run.items():
        rows = [r for r in seeds.values() if PRIMARY in r]
        if not rows:
            continue
        entry = {"label": labels.get(arm, arm), "seeds": len(rows)}
        for key in (
            "p_continue_wrong_start",
            "p_continue_wrong_end",
            PRIMARY,
            "drift_predicted_signal",
            "signal_per_step",
            "p_continue_right_end",
            "wrong_rate_start",
            "wrong_rate_end",
            "slip_rate_end",
            "fillers_after_wrong_start",
            "fillers_after_wrong_end",
        ):
            values = [r[key] for r in rows if r.get(key) is not None]
            entry[key] = mean_std(values) if values else None
        signal = entry["drift_predicted_signal"]
        entry["drift_predicted"] = (
            (common + kappa * signal[0], abs(kappa) * signal[1]) if fit and signal else None
        )
        shares = [s["bucket_shares"] for steps in mechanisms.get(arm, {}).values() for s in steps]
        entry["bucket_shares"] = (
            [sum(col) / len(shares) for col in zip(*shares, strict=True)] if shares else None
        )
        arms[arm] = entry
    test = None
    if "grpo" in arms and "drgrpo" in arms:
        a = [r[PRIMARY] for r in per_run["grpo"].values() if r.get(PRIMARY) is not None]
        b = [r[PRIMARY] for r in per_run["drgrpo"].values() if r.get(PRIMARY) is not None]
        n_steps = max(len(s) for s in mechanisms["grpo"].values())
        effect = arms["grpo"]["signal_per_step"][0] - arms["drgrpo"]["signal_per_step"][0]
        spread = math.sqrt((mean_std(a)[1] ** 2 + mean_std(b)[1] ** 2) / 2)
        held = heldout_gain(per_run)
        signal_gap = arms["grpo"]["drift_predicted_signal"][0] - arms["drgrpo"]["drift_predicted_signal"][0]
        test = {
            "metric": PRIMARY,
            # standard error of the difference of means over seeds (Welch)
            "difference_se": math.sqrt(mean_std(a)[1] ** 2 / len(a) + mean_std(b)[1] ** 2 / len(b)),
            "heldout_kappa": held[0] if held else None,
            "heldout_runs": held[1] if held else 0,
            "heldout_predicted_difference": held[0] * signal_gap if held else None,
            "grpo": a,
            "drgrpo": b,
            "difference": sum(a) / len(a) - sum(b) / len(b),
            "p": permutation_test(a, b),
            "predicted_difference": kappa
            * (arms["grpo"]["drift_predicted_signal"][0] - arms["drgrpo"]["drift_predicted_signal"][0])
            if kappa is not None
            else None,
            "steps_for_p01": steps_needed(kappa * effect, spread, n_steps, min(len(a), len(b)))
            if kappa is not None
            else None,
        }
    summary = {"kappa": kappa, "common_drift": common, "arms": arms, "primary_test": test}
    summary["markdown"] = mechanism_markdown(summary, window)
    return summary


def _pm(stat, fmt: str) -> str:
    return "n/a" if stat is None else f"{stat[0]:{fmt}} ± {stat[1]:{fmt}}"


def mechanism_markdown(summary: Mapping, window: int) -> str:
    """The decision table, predicted vs measured drift, the primary test and the difficulty-bias table."""
    arms = summary["arms"]
    lines = [
        "## The stop/continue decision after a boxed wrong answer",
        "",
        f"Per arm, mean ± std over seeds; start/end pool the first/last {window} rollouts of each run.",
        "",
        "| arm | seeds | P(continue \\| wrong) start | end | measured Δ log P | predicted Δ log P "
        "| P(continue \\| right) end | wrong rate start → end | slip rate end | fillers after wrong start → end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in arms.values():
        lines.append(
            f"| {e['label']} | {e['seeds']} | {_pm(e['p_continue_wrong_start'], '.3f')} "
            f"| {_pm(e['p_continue_wrong_end'], '.3f')} | {_pm(e[PRIMARY], '+.3f')} "
            f"| {_pm(e['drift_predicted'], '+.3f')} | {_pm(e['p_continue_right_end'], '.3f')} "
            f"| {_pm(e['wrong_rate_start'], '.2f')} → {_pm(e['wrong_rate_end'], '.2f')} "
            f"| {_pm(e['slip_rate_end'], '.3f')} "
            f"| {_pm(e['fillers_after_wrong_start'], '.2f')} → {_pm(e['fillers_after_wrong_end'], '.2f')} |"
        )
    kappa = summary["kappa"]
    lines += [
        "",
        "Predicted Δ log P = c + κ × S, S = Σ_t c_t (1 − p_t) g_t / M_t (`lab_mechanism.predicted_drift`: the "
        "first-order push of each rollout's token weights on the decision, relative to the rollout's total "
        "token-weight mass; c_t weighs each update as the start/end windows see it). One line is fitted over "
        "all runs of all arms (least squares): common drift c = "
        + ("n/a" if summary.get("common_drift") is None else f"{summary['common_drift']:+.3f}")
        + ", gain κ = "
        + ("n/a" if kappa is None else f"{kappa:.3g}")
        + ". S is 0 in expectation under Dr. GRPO (and std-norm only) without any fitting; c is what moves "
        "every arm alike, κ the scale of the length term's push.",
    ]
    test = summary.get("primary_test")
    if test:
        lines += [
            "",
            "**Pre-registered primary test** (recipes/lab/bias_lab_decision.yaml): Δ log P(continue | boxed wrong), "
            "GRPO vs Dr. GRPO, exact two-sided permutation test over seeds: "
            f"difference {test['difference']:+.3f} (GRPO {len(test['grpo'])} seeds, Dr. GRPO "
            f"{len(test['drgrpo'])} seeds), **p = {test['p']:.4f}**.",
        ]
        if test["predicted_difference"] is not None:
            steps = test["steps_for_p01"]
            lines.append(
                f"Predicted difference κ × (S of GRPO − S of Dr. GRPO) = "
                f"{test['predicted_difference']:+.3f}; at that rate and this seed spread (growing as √T), "
                + (
                    "no step count follows (the predicted effect is not positive, or one seed gives no spread)."
                    if steps is None
                    else f"p ≈ 0.01 (2.58 standard errors) needs about {steps:.0f} steps with these seeds."
                )
            )
        if test.get("heldout_predicted_difference") is not None:
            lines.append(
                f"Held out (not pre-registered): κ fitted on the {test['heldout_runs']} runs of the single-bias "
                f"arms only, none of them in the test, is {test['heldout_kappa']:.3g}; it predicts a difference "
                f"of {test['heldout_predicted_difference']:+.3f}, against the measured "
                f"{test['difference']:+.3f} ± {test['difference_se']:.3f} (1 standard error over seeds)."
            )
    lines += [
        "",
        "## Difficulty bias: share of the update per group accuracy",
        "",
        "Share of each rollout's token-weight mass Σ |A_i| w_i |o_i| going to groups with k of G right "
        "(mean over rollouts and seeds). GRPO's 1/std raises the share of nearly-all-right and nearly-all-wrong groups.",
        "",
    ]
    width = max((len(e["bucket_shares"]) for e in arms.values() if e["bucket_shares"]), default=0)
    if width > 2:
        lines.append("| arm | " + " | ".join(f"{k} right" for k in range(1, width - 1)) + " |")
        lines.append("|---|" + "---|" * (width - 2))
        for e in arms.values():
            if e["bucket_shares"]:
                lines.append(
                    f"| {e['label']} | " + " | ".join(f"{v:.3f}" for v in e["bucket_shares"][1:-1]) + " |"
                )
    return "\n".join(lines) + "\n"


def _smooth(values: Sequence[float | None], k: int) -> list[float]:
    out = []
    for i in range(len(values)):
        part = [v for v in values[max(0, i - k + 1) : i + 1] if v is not None]
        out.append(sum(part) / len(part) if part else math.nan)
    return out


def mechanism_plots(
    out: Path, mechanisms: Mapping[str, Mapping[str, Sequence[Mapping]]], labels: Mapping[str, str], kappa
) -> list[str]:
    """``plots/mechanism.png`` (decision rates vs steps, mean ± std over seeds), ``plots/drift.png``
    (measured vs predicted cumulative change of log P(continue | wrong)) and ``plots/difficulty.png``."""
    import numpy as np

    from ..analysis.plots import panels, save

    paths = []
    keys = [
        ("p_continue_wrong", "P(continue | boxed wrong)"),
        ("p_continue_right", "P(continue | boxed right)"),
        ("fillers_after_wrong", "filler sentences after a wrong answer"),
        ("wrong_rate", "wrong answers among boxed"),
    ]
    fig, axes = panels(len(keys), cols=2)
    for ax, (key, title) in zip(axes, keys, strict=True):
        for arm, seeds in mechanisms.items():
            curves = [_smooth([s.get(key) for s in steps], 5) for steps in seeds.values() if steps]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            data = np.array([c[:n] for c in curves], dtype=float)
            mean, std = np.nanmean(data, axis=0), np.nanstd(data, axis=0)
            x = np.arange(1, n + 1)
            ax.plot(x, mean, label=labels.get(arm, arm))
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    paths.append(
        save(fig, out / "plots" / "mechanism.png", "The decision after an answer (mean ± std over seeds)")
    )

    fig, axes = panels(2)
    for arm, seeds in mechanisms.items():
        measured, predicted = [], []
        for steps in seeds.values():
            if not steps:
                continue
            counts = [s["counts_wrong"] for s in steps]
            rates = [
                (sum(c[0] for c in counts[max(0, t - 9) : t + 1]) + 0.5)
                / (sum(c[1] for c in counts[max(0, t - 9) : t + 1]) + 1.0)
                for t in range(len(counts))
            ]  # pooled over the last 10 rollouts, as log_drift pools its windows
            measured.append([math.log(r) - math.log(rates[min(9, len(rates) - 1)]) for r in rates])
            predicted.append(np.cumsum([(kappa or 0.0) * s["pred_drift"] for s in steps]))
        if not measured:
            continue
        n = min(len(m) for m in measured)
        x = np.arange(1, n + 1)
        for ax, rows in zip(axes, (measured, predicted), strict=True):
            data = np.array([r[:n] for r in rows], dtype=float)
            mean, std = np.nanmean(data, axis=0), np.nanstd(data, axis=0)
            ax.plot(x, mean, label=labels.get(arm, arm))
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    axes[0].set_title("measured Δ log P(continue | wrong) (10-step mean)")
    axes[1].set_title("predicted: κ × cumulative first-order push")
    for ax in axes:
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    paths.append(save(fig, out / "plots" / "drift.png", "Predicted vs measured drift"))

    fig, axes = panels(1, width=7)
    arms = [a for a, seeds in mechanisms.items() if any(seeds.values())]
    for j, arm in enumerate(arms):
        shares = [s["bucket_shares"] for steps in mechanisms[arm].values() for s in steps]
        mean = [sum(col) / len(shares) for col in zip(*shares, strict=True)]
        k = np.arange(1, len(mean) - 1)
        axes[0].bar(
            k + (j - (len(arms) - 1) / 2) * 0.8 / len(arms),
            mean[1:-1],
            0.8 / len(arms),
            label=labels.get(arm, arm),
        )
    axes[0].set_xlabel("right answers in the group (k of G)")
    axes[0].set_ylabel("share of the update")
    axes[0].legend(fontsize=8)
    paths.append(
        save(fig, out / "plots" / "difficulty.png", "Difficulty bias: update share per group accuracy")
    )
    return paths
