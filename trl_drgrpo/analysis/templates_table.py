"""The paper's Table 1 layout from several evaluation folders: rows model × template (× training step),
columns the five benchmarks and their average. Absorbs ``recipes/evaluate.py --merge``.

A folder without ``summary.json`` is summarised from its ``samples.jsonl``; folders written during
training (``<run>/eval/step_<N>``) or evaluating a ``checkpoint-<N>`` get a Step column and, in the
plot, a learning curve per model × template.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..evaluation.benchmarks import BENCHMARKS
from ..evaluation.scoring import build_summary
from . import plots
from .io import AnalysisError, EvalRun, load_eval_runs, prepare_output, write_outputs


def summary_of(run: EvalRun) -> dict:
    if run.summary is not None:
        return run.summary
    names = [b for b in BENCHMARKS if any(r.get("benchmark") == b for r in run.records)]
    if not names:
        raise AnalysisError(f"{run.path}: no sample names one of the benchmarks {', '.join(BENCHMARKS)}")
    per_problem: dict[tuple, int] = {}
    for r in run.records:
        key = (r.get("benchmark"), r.get("index"))
        per_problem[key] = per_problem.get(key, 0) + 1
    n = int(run.config.get("n") or max(per_problem.values()))
    try:
        return build_summary(run.records, names, n, run.config)
    except (KeyError, TypeError, ValueError) as err:
        raise AnalysisError(f"{run.path}: cannot summarise its samples ({err})") from None


def table_rows(runs: Sequence[EvalRun]) -> list[dict]:
    """One row per evaluation: model, template, step, accuracy per benchmark and their average."""
    rows = []
    for run in runs:
        summary = summary_of(run)
        accs = {
            b: float(m["accuracy"])
            for b, m in (summary.get("benchmarks") or {}).items()
            if b in BENCHMARKS and isinstance(m, dict) and m.get("accuracy") is not None
        }
        rows.append(
            {
                "label": run.label,
                "path": str(run.path),
                "model": run.model or summary.get("model"),
                "template": run.template or summary.get("template"),
                "step": run.step,
                "benchmarks": accs,
                "average": sum(accs.values()) / len(accs) if accs else None,
                "partial": len(accs) < len(BENCHMARKS),
            }
        )
    return rows


def markdown(rows: Sequence[dict]) -> str:
    """The table (accuracies in %; ``*`` marks an average over fewer than the five benchmarks)."""
    with_step = any(r["step"] is not None for r in rows)
    cols = [spec.display for spec in BENCHMARKS.values()]
    lead = ["Model", "Template"] + (["Step"] if with_step else [])
    lines = [
        "| " + " | ".join(lead) + " | " + " | ".join(cols) + " | Avg. |",
        "|" + "---|" * len(lead) + "---:|" * (len(cols) + 1),
    ]
    for r in rows:
        cells = [f"{100 * r['benchmarks'][b]:.1f}" if b in r["benchmarks"] else "–" for b in BENCHMARKS]
        avg = "–" if r["average"] is None else f"{100 * r['average']:.1f}" + ("*" if r["partial"] else "")
        lead_cells = [str(r["model"]), str(r["template"])]
        if with_step:
            lead_cells.append("" if r["step"] is None else str(r["step"]))
        lines.append("| " + " | ".join(lead_cells) + " | " + " | ".join(cells) + f" | {avg} |")
    if any(r["partial"] for r in rows):
        lines += ["", "\\* average over the benchmarks evaluated only."]
    return "\n".join(lines) + "\n"


def merge_table(paths: Sequence[str | os.PathLike]) -> str:
    """The Markdown table of several ``summary.json`` files or evaluation folders (``--merge``)."""
    return markdown(table_rows(load_eval_runs(paths, need_samples=False)))


def _plot(rows: Sequence[dict], out: Path) -> list[str]:
    files = []
    benches = [b for b in BENCHMARKS if any(b in r["benchmarks"] for r in rows)]
    latest: dict[tuple, dict] = {}
    for r in rows:  # bars: the last step of each model × template
        key = (r["model"], r["template"])
        if key not in latest or (r["step"] or 0) >= (latest[key]["step"] or 0):
            latest[key] = r
    fig, axes = plots.panels(
        1, width=max(6.0, 1.1 * (len(benches) + 1) * max(1, len(latest)) ** 0.5), height=3.8
    )
    plots.grouped_bars(
        axes[0],
        [BENCHMARKS[b].display for b in benches] + ["Avg."],
        {
            plots.short(f"{m} / {t}", 32): [r["benchmarks"].get(b) for b in benches] + [r["average"]]
            for (m, t), r in latest.items()
        },
        ylabel="accuracy",
    )
    axes[0].set_title("Accuracy per model × template")
    files.append(plots.save(fig, out / "templates.png"))
    curves = {k: sorted((r for r in rows if (r["model"], r["template"]) == k and r["step"] is not None),
                        key=lambda r: r["step"]) for k in latest}  # fmt: skip
    curves = {k: v for k, v in curves.items() if len(v) > 1}
    if curves:
        fig, axes = plots.panels(1, width=5.5, height=3.8)
        for (m, t), rs in curves.items():
            axes[0].plot([r["step"] for r in rs], [100 * (r["average"] or 0) for r in rs], marker="o",
                         markersize=3, label=plots.short(f"{m} / {t}", 32))  # fmt: skip
        axes[0].set_xlabel("step")
        axes[0].set_ylabel("average accuracy (%)")
        axes[0].grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        axes[0].set_title("Average accuracy over training")
        files.append(plots.save(fig, out / "templates_steps.png"))
    return files


def templates(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    show_progress: bool = True,
) -> dict:
    """Table 1 from evaluation folders (or ``summary.json`` files); writes results when ``output_dir``."""
    runs = load_eval_runs(inputs, need_samples=False, labels=labels)
    rows = table_rows(runs)
    table = markdown(rows)
    summary = {"command": "templates", "benchmark_names": list(BENCHMARKS), "rows": rows}
    if output_dir is not None:
        out = prepare_output(output_dir)
        summary["plots"] = _plot(rows, out)
        write_outputs(out, summary, table, "templates")
    summary["table"] = table
    return summary
