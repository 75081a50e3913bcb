"""Training dynamics of one or more runs, overlaid (the paper's Figures 5, 7 and 8).

From each run's ``trainer_state.json`` log history (its own or its checkpoints'), and the in-training
evaluations under ``<run>/eval/step_<N>``: reward, mean length of correct and of incorrect responses,
truncated fraction, fraction of groups with equal rewards, and benchmark accuracy, against steps.
Runs can be grouped by arm (e.g. seeds of GRPO vs seeds of Dr. GRPO): a group is drawn as the mean
over its runs with a ±1 standard deviation band, and summarised as mean and standard deviation.

Python API for other tools (the bias lab): ``dynamics(run_dirs, groups=..., output_dir=...)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import plots
from .io import (
    AnalysisError,
    load_training_log,
    markdown_table,
    prepare_output,
    series,
    step_from_path,
    write_outputs,
)

# name -> (logged keys tried in order: ours first, then TRL's own; display label)
METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "reward": (("reward",), "mean reward"),
    "correct_length": (("drgrpo/correct_mean_length",), "length of correct responses"),
    "incorrect_length": (("drgrpo/incorrect_mean_length",), "length of incorrect responses"),
    "mean_length": (("completions/mean_length",), "mean response length"),
    "truncated": (("drgrpo/truncated_fraction", "completions/clipped_ratio"), "truncated fraction"),
    "zero_spread": (("drgrpo/zero_std_group_fraction", "frac_reward_zero_std"), "groups with equal rewards"),
    "eval_accuracy": (("eval/average/accuracy",), "benchmark accuracy (average)"),
}
# (panel title, metrics drawn, y label, y is a fraction)
PANELS = (
    ("Reward", ("reward",), "reward", False),
    ("Response length", ("correct_length", "incorrect_length"), "tokens", False),
    ("Truncated", ("truncated",), "fraction (%)", True),
    ("Groups with equal rewards", ("zero_spread",), "fraction (%)", True),
    ("Benchmark accuracy", ("eval_accuracy",), "accuracy (%)", True),
)
_SHORT = {"correct_length": "correct", "incorrect_length": "incorrect"}


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` points (fewer at the start)."""
    if window < 1:
        raise AnalysisError(f"smoothing window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def run_series(history: Sequence[Mapping], smooth: int = 1) -> dict[str, dict]:
    """Each metric of ``METRICS`` the log has: ``{"key", "steps", "raw", "values"}`` (values smoothed)."""
    out = {}
    for name, (keys, _) in METRICS.items():
        key, steps, values = series(history, keys)
        if key is not None:
            out[name] = {"key": key, "steps": steps, "raw": values, "values": moving_average(values, smooth)}
    benches = sorted({k for e in history for k in e if k.startswith("eval/") and k.endswith("/accuracy")})
    for key in benches:
        if key != "eval/average/accuracy":
            _, steps, values = series(history, [key])
            out[key] = {"key": key, "steps": steps, "raw": values, "values": values}
    return out


def endpoint_stats(values: Sequence[float], steps: Sequence[int], window: int) -> dict:
    """Start/end means over the first/last ``window`` points, extremes and the step range."""
    w = max(1, min(window, len(values)))
    return {
        "points": len(values),
        "first_step": steps[0],
        "last_step": steps[-1],
        "start": sum(values[:w]) / w,
        "end": sum(values[-w:]) / w,
        "min": min(values),
        "max": max(values),
    }


def aggregate(
    curves: Sequence[tuple[Sequence[int], Sequence[float]]],
) -> tuple[list[int], list[float], list[float]]:
    """Mean and sample std across runs at each step (over the runs that logged that step)."""
    at: dict[int, list[float]] = {}
    for steps, values in curves:
        for s, v in zip(steps, values, strict=True):
            at.setdefault(s, []).append(v)
    steps = sorted(at)
    stats = [mean_std(at[s]) for s in steps]
    return steps, [m for m, _ in stats], [sd for _, sd in stats]


def run_label(path: str | os.PathLike) -> str:
    """A run's name: its folder (the run folder above a ``checkpoint-N`` or ``trainer_state.json``)."""
    p = Path(path).resolve()
    if p.is_file():
        p = p.parent
    if step_from_path(p.name) is not None:
        p = p.parent
    return p.name


def _resolve_groups(
    run_dirs: Sequence[str | os.PathLike], groups: Mapping[str, Sequence] | Sequence[str] | None
) -> tuple[list[str], dict[str, str | None]]:
    """Ordered run paths and each path's group name (None when ungrouped)."""
    paths = [str(p) for p in run_dirs or []]
    group_of: dict[str, str | None] = {p: None for p in paths}
    if groups is None:
        pass
    elif isinstance(groups, Mapping):
        for name, members in groups.items():
            if not members:
                raise AnalysisError(f"group {name!r} has no runs")
            for m in members:
                if str(m) not in group_of:
                    paths.append(str(m))
                group_of[str(m)] = str(name)
    else:
        if len(groups) != len(paths):
            raise AnalysisError(f"{len(groups)} group names given for {len(paths)} runs")
        group_of = {p: str(g) for p, g in zip(paths, groups, strict=True)}
    if not paths:
        raise AnalysisError("no training run given")
    return paths, group_of


def dynamics(
    run_dirs: Sequence[str | os.PathLike] = (),
    output_dir: str | os.PathLike | None = None,
    *,
    groups: Mapping[str, Sequence[str | os.PathLike]] | Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    window: int = 5,
    smooth: int = 1,
    title: str | None = None,
    show_progress: bool = True,
) -> dict:
    """Overlay the training curves of ``run_dirs`` (and of ``groups``); return the summary dict.

    Args:
        run_dirs: Run folders (or ``trainer_state.json`` files).
        output_dir: Where ``summary.json``, ``dynamics.md`` and the PNGs go (None: write nothing).
        groups: ``{arm: [run, ...]}`` (runs may be left out of ``run_dirs``), or one arm name per run.
        labels: One display name per run of ``run_dirs`` (default: folder names).
        window: Logged points averaged for the start and end values of the summary (raw values).
        smooth: Trailing moving-average window applied to the drawn curves (1: raw).
        title: Figure title.
        show_progress: Accepted for a uniform API (reading logs is quick).
    """
    if window < 1:
        raise AnalysisError(f"window must be >= 1, got {window}")
    paths, group_of = _resolve_groups(run_dirs, groups)
    if labels is not None and len(labels) != len(paths):
        raise AnalysisError(f"{len(labels)} labels given for {len(paths)} runs")
    names = list(labels) if labels is not None else [run_label(p) for p in paths]
    if len(set(names)) < len(names):
        names = [n if names.count(n) == 1 else f"{n} ({p})" for n, p in zip(names, paths, strict=True)]

    runs: dict[str, dict] = {}
    for name, path in zip(
        names, paths, strict=True
    ):  # logs are small: no progress bar to interleave with errors
        history = load_training_log(path)
        curves = run_series(history, smooth)
        if not any(k in curves for k in METRICS):
            wanted = sorted({k for keys, _ in METRICS.values() for k in keys})
            raise AnalysisError(f"{path}: the training log has none of the metrics {', '.join(wanted)}")
        runs[name] = {
            "path": str(path),
            "group": group_of[path],
            "curves": curves,
            "metrics": {
                m: {"key": c["key"], **endpoint_stats(c["raw"], c["steps"], window)}
                for m, c in curves.items()
            },
        }

    group_summary: dict[str, dict] = {}
    for g in dict.fromkeys(r["group"] for r in runs.values() if r["group"] is not None):
        members = [n for n, r in runs.items() if r["group"] == g]
        metrics = {}
        for m in dict.fromkeys(k for n in members for k in runs[n]["curves"]):
            have = [n for n in members if m in runs[n]["curves"]]
            s_mean, s_std = mean_std([runs[n]["metrics"][m]["start"] for n in have])
            e_mean, e_std = mean_std([runs[n]["metrics"][m]["end"] for n in have])
            steps, mean, std = aggregate(
                [(runs[n]["curves"][m]["steps"], runs[n]["curves"][m]["values"]) for n in have]
            )
            metrics[m] = {
                "runs": len(have),
                "start_mean": s_mean,
                "start_std": s_std,
                "end_mean": e_mean,
                "end_std": e_std,
                "curve": {"steps": steps, "mean": mean, "std": std},
            }
        group_summary[g] = {"runs": members, "metrics": metrics}

    summary = {
        "command": "dynamics",
        "window": window,
        "smooth": smooth,
        "runs": {n: {k: v for k, v in r.items() if k != "curves"} for n, r in runs.items()},
        "groups": group_summary,
    }
    if output_dir is not None:
        out = prepare_output(output_dir)
        summary["plots"] = _plot(runs, group_summary, out, title)
        write_outputs(out, summary, _table(runs, group_summary), "dynamics")
    return summary


def _fmt(value: float | None, percent: bool) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.3g}"


_TABLE_COLUMNS = (
    ("reward", "start", "Reward start", False),
    ("reward", "end", "Reward end", False),
    ("correct_length", "end", "Correct length end", False),
    ("incorrect_length", "end", "Incorrect length end", False),
    ("truncated", "end", "Truncated end %", True),
    ("zero_spread", "end", "Equal-reward groups end %", True),
    ("eval_accuracy", "end", "Benchmark acc. end %", True),
)


def _table(runs: Mapping[str, dict], groups: Mapping[str, dict]) -> str:
    rows = []
    for name, r in runs.items():
        last = max(m["last_step"] for m in r["metrics"].values())
        cells = [_fmt(r["metrics"].get(m, {}).get(k), pct) for m, k, _, pct in _TABLE_COLUMNS]
        rows.append([name, r["group"] or "", last, *cells])
    for g, info in groups.items():
        cells = []
        for m, k, _, pct in _TABLE_COLUMNS:
            stat = info["metrics"].get(m)
            if stat is None:
                cells.append("–")
            else:
                mean, std = stat[f"{k}_mean"], stat[f"{k}_std"]
                cells.append(f"{_fmt(mean, pct)} ± {_fmt(std, pct)}")
        rows.append([f"**{g}** (mean ± std)", f"{len(info['runs'])} runs", "", *cells])
    header = ["Run", "Arm", "Steps", *[c for _, _, c, _ in _TABLE_COLUMNS]]
    return markdown_table(header, rows, align_right_from=2)


def _curve(runs: Mapping[str, dict], groups: Mapping[str, dict], name: str, is_group: bool, metric: str):
    """``(steps, values, std or None)`` of a run's or a group's metric, or None."""
    if is_group:
        stat = groups[name]["metrics"].get(metric)
        if stat is None:
            return None
        c = stat["curve"]
        return c["steps"], c["mean"], (c["std"] if stat["runs"] > 1 else None)
    c = runs[name]["curves"].get(metric)
    return None if c is None else (c["steps"], c["values"], None)


def _plot(runs: Mapping[str, dict], groups: Mapping[str, dict], out: Path, title: str | None) -> list[str]:
    def has(m: str) -> bool:
        return any(m in r["curves"] for r in runs.values())

    # a log without our per-outcome lengths (plain TRL) still gets its mean length drawn
    by_outcome = PANELS[1][1]
    panels = [
        (t, ("mean_length",), y, pct) if ms == by_outcome and not any(map(has, ms)) else (t, ms, y, pct)
        for t, ms, y, pct in PANELS
    ]
    present = [p for p in panels if any(map(has, p[1]))]
    fig, axes = plots.panels(len(present), cols=3, width=4.6, height=3.4)
    colors = plots.plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # groups drawn as mean ± std, then the runs that belong to no group
    entities = [(g, True) for g in groups] + [(n, False) for n, r in runs.items() if r["group"] is None]
    styles = ("-", "--", ":", "-.")
    for ax, (panel, metrics, ylabel, pct) in zip(axes, present, strict=True):
        scale = 100 if pct else 1
        for i, (entity, is_group) in enumerate(entities):
            color = colors[i % len(colors)]
            for j, m in enumerate(metrics):
                curve = _curve(runs, groups, entity, is_group, m)
                if curve is None:
                    continue
                steps, values, std = curve
                label = plots.short(entity, 28) + (f" · {_SHORT.get(m, m)}" if len(metrics) > 1 else "")
                marker = "o" if len(steps) < 30 else None
                ax.plot(steps, [scale * v for v in values], styles[j % 4], color=color, marker=marker,
                        markersize=3, label=label)  # fmt: skip
                if std is not None:
                    lo = [scale * (a - b) for a, b in zip(values, std, strict=True)]
                    hi = [scale * (a + b) for a, b in zip(values, std, strict=True)]
                    ax.fill_between(steps, lo, hi, color=color, alpha=0.18, linewidth=0)
        if pct:  # fractions from 0, and an all-zero curve (no truncation) on a readable scale
            ax.set_ylim(0, max(ax.get_ylim()[1], 5))
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(entities) > 1 or len(metrics) > 1:
            ax.legend(fontsize=7)
    files = [plots.save(fig, out / "dynamics.png", title)]

    benches = sorted({m for r in runs.values() for m in r["curves"] if m.startswith("eval/")})
    if benches:
        fig, axes = plots.panels(len(benches), cols=3, width=4.2, height=3.2)
        for ax, key in zip(axes, benches, strict=True):
            for i, name in enumerate(runs):
                c = runs[name]["curves"].get(key)
                if c is not None:
                    ax.plot(c["steps"], [100 * v for v in c["values"]], marker="o", markersize=3,
                            color=colors[i % len(colors)], label=plots.short(name, 28))  # fmt: skip
            ax.set_title(key.split("/")[1])
            ax.set_xlabel("step")
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
            if len(runs) > 1:
                ax.legend(fontsize=7)
        files.append(plots.save(fig, out / "dynamics_benchmarks.png", title))
    return files
