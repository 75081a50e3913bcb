"""pass@k curves (k = 1..n) per benchmark from evaluations with n > 1 samples per problem.

The paper measures exploration with pass@8 (Section 2.2); the curves show how much of that comes from
more samples. Each problem contributes the unbiased estimate ``1 - C(n-c, k) / C(n, k)`` (c correct of
its n samples), averaged over the problems of a benchmark; ``all`` averages the benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..evaluation.scoring import pass_at_k
from . import plots
from .io import (
    AnalysisError,
    EvalRun,
    fmt_pct,
    is_correct,
    load_eval_runs,
    markdown_table,
    prepare_output,
    write_outputs,
)


def pass_curve(correct_counts: Sequence[int], n: int) -> list[float]:
    """Mean pass@k over problems for k = 1..n, from each problem's number of correct samples."""
    if not correct_counts:
        raise AnalysisError("no problems to compute pass@k on")
    return [sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) for k in range(1, n + 1)]


def _analyse_run(run: EvalRun) -> dict:
    groups: dict[str, dict[object, list[bool]]] = {}
    for i, r in enumerate(run.records):
        c = is_correct(r)
        if c is None:
            raise AnalysisError(f"{run.path}: line {i + 1} has no numeric 'score'")
        key = r.get("index", r.get("problem", r.get("prompt")))
        if key is None:
            raise AnalysisError(f"{run.path}: line {i + 1} has no 'index' or 'problem' to group samples by")
        groups.setdefault(str(r.get("benchmark", "all")), {}).setdefault(key, []).append(c)
    result: dict[str, dict] = {}
    for bench, problems in groups.items():
        sizes = {len(s) for s in problems.values()}
        if len(sizes) > 1:
            raise AnalysisError(
                f"{run.path}: problems of {bench!r} have different sample counts {sorted(sizes)}; pass@k needs the same n"
            )
        n = sizes.pop()
        if n < 2:
            raise AnalysisError(f"{run.path}: pass@k needs n > 1 samples per problem, {bench!r} has {n}")
        curve = pass_curve([sum(s) for s in problems.values()], n)
        result[bench] = {"n": n, "problems": len(problems), "pass@k": curve}
    if len(result) > 1:
        n_min = min(r["n"] for r in result.values())
        result["all"] = {
            "n": n_min,
            "problems": sum(r["problems"] for r in result.values()),
            "pass@k": [sum(r["pass@k"][k] for r in result.values()) / len(result) for k in range(n_min)],
        }
    return result


def _ks(n: int) -> list[int]:
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n]
    return ks if n in ks else [*ks, n]


def _table(results: Mapping[str, dict]) -> str:
    n_max = max(r["n"] for res in results.values() for r in res.values())
    ks = _ks(n_max)
    rows = []
    for label, res in results.items():
        for bench, r in res.items():
            rows.append(
                [label, bench, r["n"], *[fmt_pct(r["pass@k"][k - 1]) if k <= r["n"] else "–" for k in ks]]
            )
    return markdown_table(
        ["Evaluation", "Benchmark", "n", *[f"pass@{k} %" for k in ks]], rows, align_right_from=2
    )


def _plot(results: Mapping[str, dict], out: Path) -> list[str]:
    benches = list(dict.fromkeys(b for res in results.values() for b in res))
    fig, axes = plots.panels(len(benches), cols=3, width=4.4, height=3.4)
    for ax, bench in zip(axes, benches, strict=True):
        for label, res in results.items():
            if bench in res:
                curve = res[bench]["pass@k"]
                ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker="o", markersize=3,
                        label=plots.short(label, 30))  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_title(bench)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.grid(alpha=0.3)
        if len(results) > 1:
            ax.legend(fontsize=7)
    return [plots.save(fig, out / "passk.png")]


def passk(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    show_progress: bool = True,
) -> dict:
    """pass@k curves of evaluation folders (overlaid); writes results when ``output_dir``.

    ``show_progress`` is accepted for a uniform API (counting correct samples is quick).
    """
    runs = load_eval_runs(inputs, labels=labels)
    results = {run.label: _analyse_run(run) for run in runs}
    summary = {"command": "passk", "inputs": {run.label: str(run.path) for run in runs}, "results": results}
    if output_dir is not None:
        out = prepare_output(output_dir)
        summary["plots"] = _plot(results, out)
        write_outputs(out, summary, _table(results), "passk")
    return summary
