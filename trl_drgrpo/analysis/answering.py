"""Question-answering ability of a base model under a template (the paper's Figure 3, left).

A response *answers* when it holds a well-formed final answer in its template's format (the last
``\\boxed{}`` for ``qwen_math`` / ``no``, ``</think> <answer>...</answer>`` for ``r1``), as extracted by
``trl_drgrpo.rewards.extract_answer``; otherwise it keeps writing (continues or expands the question,
or runs out of budget). The paper judged this with GPT-4o-mini; the format check is its rule-based
stand-in, and needs no model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

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


def answer_stats(
    answered: Sequence[bool], correct: Sequence[bool | None], finished: Sequence[bool | None]
) -> dict:
    """Answer rate, accuracy and truncation over aligned per-response lists."""
    n = len(answered)
    graded = [c for c in correct if c is not None]
    ended = [f for f in finished if f is not None]
    return {
        "responses": n,
        "answer_rate": sum(answered) / n if n else None,
        "accuracy": sum(graded) / len(graded) if graded else None,
        "accuracy_when_answered": (
            sum(1 for a, c in zip(answered, correct, strict=True) if a and c) / max(1, sum(answered))
            if graded and any(answered)
            else None
        ),
        "truncated": (sum(not f for f in ended) / len(ended)) if ended else None,
    }


def _analyse_run(run: EvalRun, response_column: str, show_progress: bool) -> dict:
    from ..rewards.grader import extract_answer

    if run.template is None:
        raise AnalysisError(f"cannot tell which template produced {run.path}; pass --template")
    records = run.records
    for i, r in enumerate(records):
        if not isinstance(r.get(response_column), str):
            raise AnalysisError(f"{run.path}: line {i + 1} has no text column {response_column!r}")
    answered = [
        extract_answer(r[response_column], run.template) is not None
        for r in tqdm(records, desc=f"answers {plots.short(run.label, 24)}", disable=not show_progress)
    ]
    correct = [is_correct(r) for r in records]
    finished = [r.get("finished") if isinstance(r.get("finished"), bool) else None for r in records]
    benchmarks = [str(r.get("benchmark", "")) for r in records]
    per_bench = {}
    for bench in dict.fromkeys(benchmarks):
        idx = [i for i, b in enumerate(benchmarks) if b == bench]
        per_bench[bench or "all"] = answer_stats(
            [answered[i] for i in idx], [correct[i] for i in idx], [finished[i] for i in idx]
        )
    return {
        "model": run.model,
        "template": run.template,
        "step": run.step,
        "overall": answer_stats(answered, correct, finished),
        "benchmarks": per_bench,
    }


def _table(results: Mapping[str, dict]) -> str:
    benches = list(dict.fromkeys(b for r in results.values() for b in r["benchmarks"]))
    header = ["Model", "Template", *[f"{b} answer %" for b in benches], "Answer %", "Acc. %", "Truncated %"]
    rows = []
    for label, r in results.items():
        rows.append(
            [
                r["model"] or label,
                r["template"],
                *[fmt_pct(r["benchmarks"].get(b, {}).get("answer_rate")) for b in benches],
                fmt_pct(r["overall"]["answer_rate"]),
                fmt_pct(r["overall"]["accuracy"]),
                fmt_pct(r["overall"]["truncated"]),
            ]
        )
    return markdown_table(header, rows, align_right_from=2)


def _plot(results: Mapping[str, dict], out: Path) -> list[str]:
    models = list(dict.fromkeys((r["model"] or k) for k, r in results.items()))
    templates = list(dict.fromkeys(r["template"] for r in results.values()))
    rate = {((r["model"] or k), r["template"]): r["overall"]["answer_rate"] for k, r in results.items()}
    fig, axes = plots.panels(1, width=max(5.0, 1.3 * len(models) * max(1, len(templates)) ** 0.5), height=3.8)
    plots.grouped_bars(
        axes[0],
        [plots.short(m, 24) for m in models],
        {t: [rate.get((m, t)) for m in models] for t in templates},
        ylabel="responses that answer",
    )
    axes[0].set_title("Question-answering ability per template")
    if len(templates) == 1:
        axes[0].legend([templates[0]], fontsize=7)
    return [plots.save(fig, out / "answering.png")]


def answering(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    *,
    template: str | None = None,
    response_column: str = "response",
    labels: Sequence[str] | None = None,
    show_progress: bool = True,
) -> dict:
    """Answer rates of evaluation folders (one per model × template); writes results when ``output_dir``."""
    runs = load_eval_runs(inputs, template=template, labels=labels)
    for run in runs:
        run.template = run.template or template
    results = {run.label: _analyse_run(run, response_column, show_progress) for run in runs}
    by_template: dict[str, list[float]] = {}
    for r in results.values():
        by_template.setdefault(r["template"], []).append(r["overall"]["answer_rate"])
    summary = {
        "command": "answering",
        "definition": "a response answers when its template's answer format yields a final answer",
        "inputs": {run.label: str(run.path) for run in runs},
        "results": results,
        "templates": {t: sum(v) / len(v) for t, v in by_template.items()},
    }
    if output_dir is not None:
        out = prepare_output(output_dir)
        summary["plots"] = _plot(results, out)
        write_outputs(out, summary, _table(results), "answering")
    return summary
