"""Self-reflection in responses (the paper's Section 2.3 and Figure 15).

A response self-reflects when it contains one of the appendix's keywords (whole words, case-insensitive)
or, optionally, when an LLM judge says so. Reported per evaluation: the self-reflection rate overall and
per benchmark, the accuracy of responses with and without self-reflection, and the same per question
(Figure 15 compares the two accuracies question by question: reflecting does not mean being right).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
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
    question_key,
    write_outputs,
)
from .judge import Judge, JudgeConfig

# The paper's appendix list (Liu et al., 2025) of self-reflection keywords.
DEFAULT_KEYWORDS: tuple[str, ...] = (
    "recheck",
    "rethink",
    "reassess",
    "re-evaluate",
    "reevaluate",
    "re-examine",
    "reexamine",
    "reconsider",
    "reanalyze",
    "double-check",
    "check again",
    "think again",
    "verify again",
    "go over the steps",
    "wait",
)


def keyword_pattern(keywords: Sequence[str] = DEFAULT_KEYWORDS) -> re.Pattern:
    """A case-insensitive regex matching any keyword as whole words (any whitespace between words)."""
    words = [k.strip() for k in keywords if k and k.strip()]
    if not words:
        raise AnalysisError("the self-reflection keyword list is empty")
    parts = [r"\s+".join(re.escape(w) for w in k.split()) for k in sorted(words, key=len, reverse=True)]
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def find_keywords(text: str, pattern: re.Pattern) -> list[str]:
    """The distinct keywords found in ``text`` (lowercased, single-spaced), in order of first appearance."""
    found: list[str] = []
    for match in pattern.finditer(text or ""):
        word = " ".join(match.group(0).lower().split())
        if word not in found:
            found.append(word)
    return found


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _accuracies(flags: Sequence[bool | None], correct: Sequence[bool | None]) -> dict:
    """Rate of self-reflection and accuracies with / without it over aligned per-response lists."""
    decided = [(f, c) for f, c in zip(flags, correct, strict=True) if f is not None]
    graded = [(f, c) for f, c in decided if c is not None]
    return {
        "responses": len(flags),
        "reflection_rate": _mean(float(f) for f, _ in decided),
        "with_reflection": sum(1 for f, _ in decided if f),
        "accuracy": _mean(float(c) for _, c in graded),
        "accuracy_with_reflection": _mean(float(c) for f, c in graded if f),
        "accuracy_without_reflection": _mean(float(c) for f, c in graded if not f),
    }


def reflection_stats(
    keys: Sequence[tuple],
    benchmarks: Sequence[str],
    flags: Sequence[bool | None],
    correct: Sequence[bool | None],
) -> dict:
    """Overall, per-benchmark and per-question statistics from aligned per-response lists."""
    stats = {"overall": _accuracies(flags, correct), "benchmarks": {}, "questions": []}
    for bench in dict.fromkeys(benchmarks):
        idx = [i for i, b in enumerate(benchmarks) if b == bench]
        stats["benchmarks"][bench or "all"] = _accuracies([flags[i] for i in idx], [correct[i] for i in idx])
    by_question: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        by_question.setdefault(k, []).append(i)
    both = []
    for k, idx in by_question.items():
        q = _accuracies([flags[i] for i in idx], [correct[i] for i in idx])
        q = {"benchmark": k[0], "question": k[1], **q}
        stats["questions"].append(q)
        if q["accuracy_with_reflection"] is not None and q["accuracy_without_reflection"] is not None:
            both.append(q)
    stats["per_question"] = {
        "questions": len(by_question),
        "questions_with_both": len(both),
        "mean_accuracy_with_reflection": _mean(q["accuracy_with_reflection"] for q in both),
        "mean_accuracy_without_reflection": _mean(q["accuracy_without_reflection"] for q in both),
        "with_better": sum(q["accuracy_with_reflection"] > q["accuracy_without_reflection"] for q in both),
        "without_better": sum(q["accuracy_with_reflection"] < q["accuracy_without_reflection"] for q in both),
        "equal": sum(q["accuracy_with_reflection"] == q["accuracy_without_reflection"] for q in both),
    }
    return stats


def _analyse_run(
    run: EvalRun,
    pattern: re.Pattern,
    response_column: str,
    score_column: str,
    judge: Judge | None,
    show_progress: bool,
) -> tuple[dict, list[dict]]:
    records = run.records
    if any(not isinstance(r.get(response_column), str) for r in records):
        bad = next(i for i, r in enumerate(records) if not isinstance(r.get(response_column), str))
        raise AnalysisError(f"{run.path}: line {bad + 1} has no text column {response_column!r}")
    responses = [r[response_column] for r in records]
    found = [
        find_keywords(t, pattern)
        for t in tqdm(responses, desc=f"keywords {plots.short(run.label, 24)}", disable=not show_progress)
    ]
    keyword_flags: list[bool | None] = [bool(f) for f in found]
    flags = keyword_flags
    if judge is not None:
        questions = [str(r.get("problem") or r.get("question") or "") for r in records]
        flags = judge.verdicts(responses, questions, show_progress=show_progress)
    correct = [is_correct(r, score_column) for r in records]
    keys = [question_key(r, i) for i, r in enumerate(records)]
    benchmarks = [str(r.get("benchmark", "")) for r in records]
    stats = reflection_stats(keys, benchmarks, flags, correct)
    counts: dict[str, int] = {}
    for words in found:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    stats["keyword_counts"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    if judge is not None:
        decided = [(j, k) for j, k in zip(flags, keyword_flags, strict=True) if j is not None]
        stats["judge"] = {
            "undecided": sum(f is None for f in flags),
            "agreement_with_keywords": _mean(float(j == k) for j, k in decided),
        }
    per_response = [
        {
            "benchmark": r.get("benchmark"),
            "index": r.get("index"),
            "sample": r.get("sample"),
            "reflection": f,
            "keywords": words,
            "correct": c,
        }
        for r, f, words, c in zip(records, flags, found, correct, strict=True)
    ]
    return stats, per_response


def _table(results: Mapping[str, dict]) -> str:
    rows = []
    for label, stats in results.items():
        parts = list(stats["benchmarks"].items())
        if len(parts) > 1 or not parts:
            parts.append(("all", stats["overall"]))
        for bench, s in parts:
            rows.append(
                [
                    label,
                    bench,
                    s["responses"],
                    fmt_pct(s["reflection_rate"]),
                    fmt_pct(s["accuracy_with_reflection"]),
                    fmt_pct(s["accuracy_without_reflection"]),
                    fmt_pct(s["accuracy"]),
                ]
            )
    header = [
        "Evaluation",
        "Benchmark",
        "Responses",
        "Self-reflection %",
        "Acc. with %",
        "Acc. without %",
        "Acc. %",
    ]
    return markdown_table(header, rows, align_right_from=2)


def _plot(results: Mapping[str, dict], out: Path) -> list[str]:
    labels = list(results)
    files = []
    fig, axes = plots.panels(2, width=5.2)
    plots.grouped_bars(
        axes[0],
        [plots.short(label, 24) for label in labels],
        {
            "with self-reflection": [results[k]["overall"]["accuracy_with_reflection"] for k in labels],
            "without": [results[k]["overall"]["accuracy_without_reflection"] for k in labels],
        },
        ylabel="accuracy",
    )
    axes[0].set_title("Accuracy of responses")
    benches = list(dict.fromkeys(b for k in labels for b in results[k]["benchmarks"]))
    plots.grouped_bars(
        axes[1],
        benches,
        {
            plots.short(k, 30): [results[k]["benchmarks"].get(b, {}).get("reflection_rate") for b in benches]
            for k in labels
        },
        ylabel="self-reflection rate",
    )
    axes[1].set_title("Self-reflection rate per benchmark")
    files.append(plots.save(fig, out / "reflection_accuracy.png"))

    fig, axes = plots.panels(1, width=5.0, height=4.6)
    ax = axes[0]
    for label in labels:
        qs = [
            q
            for q in results[label]["questions"]
            if q["accuracy_with_reflection"] is not None and q["accuracy_without_reflection"] is not None
        ]
        ax.scatter(
            [100 * q["accuracy_without_reflection"] for q in qs],
            [100 * q["accuracy_with_reflection"] for q in qs],
            s=14,
            alpha=0.6,
            label=f"{plots.short(label, 30)} ({len(qs)} questions)",
        )
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("accuracy without self-reflection (%)")
    ax.set_ylabel("accuracy with self-reflection (%)")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Per question (questions with both kinds)")
    files.append(plots.save(fig, out / "reflection_per_question.png"))
    return files


def reflection(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    *,
    keywords: Sequence[str] = DEFAULT_KEYWORDS,
    response_column: str = "response",
    score_column: str = "score",
    labels: Sequence[str] | None = None,
    judge: JudgeConfig | None = None,
    show_progress: bool = True,
) -> dict:
    """Self-reflection statistics of evaluation folders or JSONL files; writes results when ``output_dir``."""
    pattern = keyword_pattern(keywords)
    runs = load_eval_runs(inputs, labels=labels)
    asker = Judge(judge) if judge is not None else None
    results, responses = {}, {}
    for run in runs:
        results[run.label], responses[run.label] = _analyse_run(
            run, pattern, response_column, score_column, asker, show_progress
        )
    summary = {
        "command": "reflection",
        "detector": "judge" if judge is not None else "keywords",
        "keywords": [k for k in keywords if k.strip()],
        "judge": None if judge is None else {"url": judge.url, "model": judge.model, "prompt": judge.prompt},
        "inputs": {run.label: str(run.path) for run in runs},
        "results": results,
    }
    if output_dir is not None:
        out = prepare_output(output_dir)
        summary["plots"] = _plot(results, out)
        lines = [
            json.dumps({"evaluation": label, **r}, ensure_ascii=False)
            for label, rs in responses.items()
            for r in rs
        ]
        (out / "responses.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_outputs(out, summary, _table(results), "reflection")
    return summary
