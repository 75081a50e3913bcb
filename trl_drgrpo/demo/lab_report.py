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
) -> dict:
    """Everything of the report from the logs (``histories[arm][seed]``) and held-out accuracies."""
    per_run = {
        arm: {
            seed: {**run_numbers(history, window), "greedy_accuracy": accuracies.get(arm, {}).get(seed)}
            for seed, history in seeds.items()
        }
        for arm, seeds in histories.items()
    }
    rows = arm_table(per_run, labels)
    tests = {}
    if "grpo" in per_run and "drgrpo" in per_run:
        for key in ("incorrect_length_ratio", "reward_end", "greedy_accuracy"):
            a = [r[key] for r in per_run["grpo"].values() if r.get(key) is not None]
            b = [r[key] for r in per_run["drgrpo"].values() if r.get(key) is not None]
            if a and b:
                tests[key] = permutation_test(a, b)
    return {
        "window": window,
        "per_run": per_run,
        "arms": rows,
        "permutation_p": tests,
        "base_greedy_accuracy": base_accuracy,
        "markdown": markdown(rows, tests, base_accuracy),
    }


def write_report(
    output_dir: str | os.PathLike,
    run_dirs: Mapping[str, Mapping[str, str | os.PathLike]],
    report: Mapping,
    *,
    labels: Mapping[str, str],
    title: str = "Bias lab",
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
    plots = sorted(str(Path(p).relative_to(out)) for p in (out / "plots").glob("*.png"))
    text = f"# {title}\n\n" + report["markdown"]
    text += f"\nStart/end values: mean of the first/last {report['window']} logged steps of each run.\n"
    text += "".join(f"\n![{Path(p).stem}]({p})\n" for p in plots)
    (out / "report.md").write_text(text)
    data = {k: v for k, v in report.items() if k != "markdown"}
    data["plots"], data["dynamics_groups"] = plots, sorted(summary.get("groups", {}))
    (out / "lab_summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data
