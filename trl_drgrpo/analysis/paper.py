"""Did a run reproduce the paper? An evaluation beside the paper's Tables 1 and 4, with the noise that decides.

For each evaluation (standalone, or a run's in-training ``eval/step_<N>``) the matching paper row is found —
by model and template, by recipe for a trained policy (a run's step > 0: the 1.5B / 7B Qwen-Math recipes ↔
Oat-Zero-1.5B / -7B, Llama-3.2-3B-NuminaQA with r1 ↔ Oat-Zero-3B), or the row named with ``--row`` — and
each benchmark and the average get a verdict: within noise, above, below.

The test: both scores are proportions of problems solved (the paper's on its suite's 30 / 83 / 500 / 272 /
675 problems), compared with a two-sided two-proportion z-test with pooled variance; the average with the
same z on the mean of the five differences, its variance the sum of the five divided by 25. The two scores
are treated as independent although they share their problems, which makes the test conservative.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

from ..evaluation.benchmarks import BENCHMARKS
from .io import AnalysisError, EvalRun, load_eval_runs, markdown_table, prepare_output, write_outputs
from .paper_tables import (
    BENCHMARK_ORDER,
    PAPER_PROTOCOL,
    ROWS,
    ROWS_BY_KEY,
    SOURCE,
    PaperRow,
    model_key,
    recipe_row,
    rows_for,
)

WITHIN, ABOVE, BELOW = "within noise", "above", "below"


# ---- the test (pure) -------------------------------------------------------------------------------------


def pooled_variance(p1: float, n1: int, p2: float, n2: int) -> float:
    """Variance of ``p1 - p2`` for two proportions on ``n1`` and ``n2`` problems if both had one common rate."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    return pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)


def critical_z(confidence: float) -> float:
    """The two-sided critical value of the standard normal (1.96 at 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise AnalysisError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def verdict(diff: float, variance: float, z: float) -> str:
    """``within noise`` when ``|diff| <= z * sqrt(variance)``, else ``above`` / ``below``."""
    if abs(diff) <= z * math.sqrt(max(variance, 0.0)) + 1e-12:
        return WITHIN
    return ABOVE if diff > 0 else BELOW


def compare_scores(
    ours: Mapping[str, tuple[float, int]], row: PaperRow, confidence: float = 0.95
) -> dict[str, Any]:
    """Benchmark by benchmark and on average: ``ours`` maps a benchmark to (accuracy in [0, 1], problems).

    A benchmark evaluated on another number of problems than the paper's, or whose printed value the paper
    contradicts (``row.doubtful``), is shown without a verdict; the average gets one only when all five have.
    """
    z = critical_z(confidence)
    cells, total_variance, complete = [], 0.0, True
    for b in BENCHMARK_ORDER:
        paper, paper_n = row.scores[b] / 100.0, row.size(b)
        cell: dict[str, Any] = {
            "benchmark": b,
            "paper": paper,
            "paper_n": paper_n,
            "ours": None,
            "ours_n": None,
        }
        if b not in ours:
            cell["reason"] = "not evaluated"
            complete = False
        else:
            acc, n = ours[b]
            cell.update(ours=acc, ours_n=n, diff=acc - paper)
            if n != paper_n:
                cell["reason"] = (
                    f"{n} of the paper's {paper_n} problems"
                    if n < paper_n
                    else f"{n} problems, the paper's {paper_n}"
                )
                complete = False
            elif b in row.doubtful:
                cell["reason"] = "the paper's value is doubtful (see note)"
            variance = pooled_variance(acc, n, paper, paper_n)
            total_variance += variance
            if "reason" not in cell:
                cell.update(noise=z * math.sqrt(variance), verdict=verdict(acc - paper, variance, z))
        cells.append(cell)
    average: dict[str, Any] = {"benchmark": "average", "paper": row.average / 100.0, "ours": None}
    if all(c["ours"] is not None for c in cells):
        average["ours"] = sum(c["ours"] for c in cells) / len(cells)
        average["diff"] = average["ours"] - average["paper"]
        if complete:
            variance = total_variance / len(cells) ** 2
            average.update(noise=z * math.sqrt(variance), verdict=verdict(average["diff"], variance, z))
        else:
            average["reason"] = "not all five benchmarks on the paper's problems"
    else:
        average["reason"] = "not all five benchmarks evaluated"
    return {"benchmarks": cells, "average": average, "confidence": confidence}


# ---- the protocol ----------------------------------------------------------------------------------------


def _recorded(config: Mapping, summary: Mapping | None, key: str) -> Any:
    if config.get(key) is not None:
        return config[key]
    if key == "dtype":
        return ((summary or {}).get("provenance") or {}).get("dtype")
    return (summary or {}).get(key)


def protocol(config: Mapping, summary: Mapping | None, row: PaperRow) -> list[dict]:
    """Each setting of the paper's protocol beside this evaluation's: ``same``, ``differs``, ``not recorded``
    or ``not checked`` (dtype ``auto``: the checkpoint's own)."""
    items = []
    for key, paper in (("template", row.template), *PAPER_PROTOCOL.items()):
        ours = _recorded(config, summary, key)
        if key == "max_model_len" and ours is None and config.get("backend") == "transformers":
            ours = "none (transformers backend)"
        if ours is None:
            status = "not recorded"
        elif key == "dtype" and ours == "auto":
            status = "not checked"  # the checkpoint's own dtype, unknown here
        elif key in ("temperature", "top_p") and isinstance(ours, (int, float)):
            status = "same" if float(ours) == float(paper) else "differs"
        else:
            status = "same" if ours == paper else "differs"
        items.append({"setting": key, "paper": paper, "ours": ours, "status": status})
    return items


def flags(items: Sequence[Mapping]) -> list[str]:
    """The settings that differ, as ``setting ours (paper: x)``."""
    return [f"{i['setting']} {i['ours']} (paper: {i['paper']})" for i in items if i["status"] == "differs"]


# ---- matching --------------------------------------------------------------------------------------------


def _read_recipe(path: str | os.PathLike) -> tuple[str, str]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise AnalysisError(f"recipe not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise AnalysisError(f"{p} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data.get("model_name_or_path"):
        raise AnalysisError(f"{p} names no model_name_or_path")
    template = data.get("template", "qwen_math")
    return str(data["model_name_or_path"]), "no" if template is False else str(template)


def _row_list(rows: Sequence[PaperRow]) -> str:
    return ", ".join(r.key for r in rows)


def match_row(
    run: EvalRun,
    *,
    row: str | None = None,
    recipe: str | os.PathLike | None = None,
    tables: tuple[int, ...] = (1, 4),
) -> tuple[PaperRow, str]:
    """The paper row ``run`` is compared with and how it was found; ``AnalysisError`` when none fits."""
    if row is not None:
        if row not in ROWS_BY_KEY:
            raise AnalysisError(f"unknown paper row {row!r}; rows: {_row_list(ROWS)}")
        return ROWS_BY_KEY[row], "named with --row"
    template = run.template
    full_model = run.config.get("model") or run.model
    trained = run.step is not None and run.step > 0
    if recipe is not None:
        base, recipe_template = _read_recipe(recipe)
        if not trained and run.step == 0:
            found = rows_for(base, template, tables)
            if found:
                return found[0], f"the recipe's base model ({base}) at step 0"
        found_row = recipe_row(base, recipe_template)
        if found_row is None or found_row.table not in tables:
            raise AnalysisError(
                f"no paper row for a run from {base} with the {recipe_template} template ({recipe}); "
                f"trained rows: {_row_list([r for r in ROWS if r.trained])}; name one with --row"
            )
        return found_row, f"recipe {Path(recipe).name} ({base}, {recipe_template})"
    if trained:
        found_row = recipe_row(full_model, template)
        if found_row is not None and found_row.table in tables:
            return found_row, f"recipe: a run from {full_model} with the {template} template, step {run.step}"
        raise AnalysisError(
            f"{run.label}: a trained policy (step {run.step}) of {full_model} with the {template} template, and no "
            f"paper row for that recipe; trained rows: {_row_list([r for r in ROWS if r.trained])}; "
            "name one with --row or the run's recipe with --recipe"
        )
    for name in dict.fromkeys((run.model, full_model)):
        found = rows_for(name, template, tables)
        if found:
            return found[0], "model and template"
    names = {model_key(run.model), model_key(full_model)}
    same_model = [r for r in ROWS if r.table in tables and r.model and model_key(r.model) in names]
    if same_model:
        raise AnalysisError(
            f"{run.label}: the paper evaluated {run.model} with other templates only "
            f"({', '.join(sorted({str(r.template) for r in same_model}))}), not {template!r}; rows: "
            f"{_row_list(same_model)}; name one with --row"
        )
    raise AnalysisError(
        f"{run.label}: no paper row for the model {run.model!r}; rows: {_row_list([r for r in ROWS if r.table in tables])}; "
        "name one with --row, or the run's recipe with --recipe for a trained model"
    )


# ---- reading an evaluation -------------------------------------------------------------------------------


def scores_of(run: EvalRun) -> dict[str, tuple[float, int]]:
    """Accuracy and number of problems per benchmark of an evaluation (from its summary, else its samples)."""
    from .templates_table import summary_of

    summary = summary_of(run)
    out = {}
    for name, metrics in (summary.get("benchmarks") or {}).items():
        if name not in BENCHMARKS or not isinstance(metrics, dict) or metrics.get("accuracy") is None:
            continue
        count = metrics.get("count")
        if count is None:
            rows = (((summary.get("provenance") or {}).get("datasets") or {}).get(name) or {}).get(
                "evaluated_rows"
            )
            count = (
                rows
                if rows is not None
                else len({r.get("index") for r in run.records if r.get("benchmark") == name}) or None
            )
        if count is None:
            raise AnalysisError(f"{run.path}: the number of {name} problems is not recorded")
        accuracy = float(metrics["accuracy"])
        if not 0.0 <= accuracy <= 1.0 or int(count) < 1:
            raise AnalysisError(
                f"{run.path}: {name} has accuracy {accuracy} on {count} problems (expected 0..1, >= 1)"
            )
        out[name] = (accuracy, int(count))
    if not out:
        raise AnalysisError(f"{run.path}: no accuracy for any of the benchmarks {', '.join(BENCHMARKS)}")
    return out


def comparison(
    run: EvalRun,
    *,
    row: str | None = None,
    recipe: str | os.PathLike | None = None,
    tables: tuple[int, ...] = (1, 4),
    confidence: float = 0.95,
) -> dict[str, Any]:
    """One evaluation against its paper row: scores, verdicts, protocol, flags (JSON-ready)."""
    paper_row, how = match_row(run, row=row, recipe=recipe, tables=tables)
    from .templates_table import summary_of

    summary = summary_of(run)
    result = compare_scores(scores_of(run), paper_row, confidence)
    items = protocol(run.config or summary.get("config") or {}, summary, paper_row)
    limit = (run.config or {}).get("limit")
    notes = [paper_row.note] if paper_row.note else []
    notes += [paper_row.doubtful[b] for b in paper_row.doubtful]
    if limit:
        notes.append(f"evaluated with --limit {limit}: benchmarks cut short get no verdict")
    return {
        "label": run.label,
        "path": str(run.path),
        "model": run.model,
        "template": run.template,
        "step": run.step,
        "row": paper_row.key,
        "row_label": paper_row.label,
        "source": paper_row.source,
        "matched_by": how,
        **result,
        "protocol": items,
        "flags": flags(items),
        "notes": list(dict.fromkeys(notes)),
    }


# ---- tables ----------------------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _verdict_cell(cell: Mapping) -> str:
    return cell.get("verdict") or f"no verdict: {cell.get('reason', '')}"


def overview(results: Sequence[Mapping]) -> str:
    """The merged layout: each evaluation's row, the paper's row beneath it, the verdict on the average."""
    header = ["Evaluation", "Row", *(BENCHMARKS[b].display for b in BENCHMARK_ORDER), "Avg.", "Avg. verdict"]
    rows = []
    for r in results:
        cells = {c["benchmark"]: c for c in r["benchmarks"]}
        digits = 2 if ROWS_BY_KEY[r["row"]].average_digits == 2 else 1
        ours_label = r["label"]
        rows.append(
            [
                ours_label,
                "ours",
                *(_pct(cells[b]["ours"]) for b in BENCHMARK_ORDER),
                _pct(r["average"]["ours"]),
                "",
            ]
        )
        rows.append(["", f"paper: Table {ROWS_BY_KEY[r['row']].table}, {r['row_label']}",
                     *(_pct(cells[b]["paper"]) for b in BENCHMARK_ORDER), _pct(r["average"]["paper"], digits),
                     _verdict_cell(r["average"])])  # fmt: skip
    return markdown_table(header, rows, align_right_from=2)


def detail(result: Mapping) -> str:
    """One evaluation benchmark by benchmark: ours, the paper's, the difference, the noise, the verdict."""
    level = f"{100 * result['confidence']:g}%"
    unchecked = [
        i["setting"] + (f" {i['ours']} (paper: {i['paper']})" if i["ours"] is not None else "")
        for i in result["protocol"]
        if i["status"] in ("not recorded", "not checked")
    ]
    header = ["Benchmark", "ours", "paper", "difference", f"noise ({level})", "verdict"]
    rows = []
    for c in [*result["benchmarks"], result["average"]]:
        name = "Avg." if c["benchmark"] == "average" else BENCHMARKS[c["benchmark"]].display
        ours = _pct(c["ours"]) + (f" ({c['ours_n']})" if c.get("ours_n") else "")
        paper = _pct(
            c["paper"],
            2 if c["benchmark"] == "average" and ROWS_BY_KEY[result["row"]].average_digits == 2 else 1,
        )
        paper += f" ({c['paper_n']})" if c.get("paper_n") else ""
        noise = "–" if c.get("noise") is None else f"±{100 * c['noise']:.1f}"
        rows.append([name, ours, paper, _signed(c.get("diff")), noise, _verdict_cell(c)])
    lines = [
        f"### {result['label']} vs {result['source']}",
        "",
        f"Matched by: {result['matched_by']}. Scores in % (problems).",
        "",
        markdown_table(header, rows).rstrip("\n"),
        "",
        ("Protocol differs: " + "; ".join(result["flags"]) if result["flags"] else "Protocol: as the paper's")
        + (f"; not recorded or not checked: {', '.join(unchecked)}" if unchecked else ""),
    ]
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def test_statement(confidence: float) -> str:
    z = critical_z(confidence)
    return (
        f"Test: two-sided two-proportion z-test with pooled variance at the {100 * (1 - confidence):g}% level, per "
        "benchmark with its number of problems (the paper's: 30 / 83 / 500 / 272 / 675); the average: the mean of "
        f"the five differences over its combined standard error. Noise = {z:.2f} x the standard error of the "
        "difference of two scores of equal accuracy: the gap such scores exceed one time in "
        f"{1 / (1 - confidence):g}. Problems shared by both scores are counted as independent (conservative). "
        f"Paper: {SOURCE} (Tables 1 and 4), trl_drgrpo/analysis/paper_tables.py.\n"
    )


# ---- the command -----------------------------------------------------------------------------------------


def _run_root(run: EvalRun) -> Path | None:
    """The training run an in-training evaluation (``<run>/eval/step_<N>``) belongs to."""
    folder = run.path if run.path.is_dir() else run.path.parent
    return folder.parent.parent if run.step is not None and folder.parent.name == "eval" else None


def _average(run: EvalRun) -> float | None:
    try:
        accs = [acc for acc, _ in scores_of(run).values()]
    except AnalysisError:
        return None
    return sum(accs) / len(accs) if len(accs) == len(BENCHMARK_ORDER) else None


def _curve(
    root: Path, evals: Sequence[EvalRun], result: Mapping, base: Mapping | None, out: Path
) -> str | None:
    points = sorted((r.step, _average(r)) for r in evals if r.step is not None)
    points = [(s, a) for s, a in points if a is not None]
    if len(points) < 2:
        return None
    from . import plots

    fig, axes = plots.panels(1, width=6.0, height=3.8)
    ax = axes[0]
    ax.plot(
        [s for s, _ in points],
        [100 * a for _, a in points],
        marker="o",
        markersize=3,
        label="ours (in-training)",
    )
    paper, noise = result["average"]["paper"], result["average"].get("noise")
    ax.axhline(
        100 * paper,
        color="C3",
        linestyle="--",
        label=f"paper: {plots.short(result['row_label'], 40)} ({100 * paper:.1f})",
    )
    if noise:
        ax.axhspan(100 * (paper - noise), 100 * (paper + noise), color="C3", alpha=0.12,
                   label=f"noise ({100 * result['confidence']:g}%)")  # fmt: skip
    if base is not None:
        ax.plot([0], [100 * base["average"]["paper"]], marker="x", color="C3", linestyle="none",
                label=f"paper at step 0: {plots.short(base['row_label'], 40)}")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("average accuracy, five benchmarks (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(plots.short(root.name, 50))
    return plots.save(fig, out / f"paper_{root.name}.png")


def paper(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    *,
    row: str | None = None,
    recipe: str | os.PathLike | None = None,
    table: int | None = None,
    step: int | None = None,
    confidence: float = 0.95,
    labels: Sequence[str] | None = None,
    skip_unmatched: bool = False,
    show_progress: bool = True,
) -> dict:
    """Compare evaluations with the paper's rows; for a training run, its last evaluated step (or ``step``) and
    its step 0, and a PNG of its in-training averages against the paper's figure. Writes results when
    ``output_dir``. ``skip_unmatched``: an evaluation without a paper row is named in a line and left out
    (with all left out, the table says so)."""
    if table not in (None, 1, 4):
        raise AnalysisError(f"--table must be 1 or 4, got {table}")
    critical_z(confidence)
    tables = (table,) if table else (1, 4)
    runs = load_eval_runs(inputs, need_samples=False, labels=labels)
    groups: dict[Any, list[EvalRun]] = {}
    for run in runs:
        root = _run_root(run)
        if root is not None and not labels:  # an in-training evaluation names the base model: add the run
            run.label = f"{root.name}: {run.label}"
        groups.setdefault(root or run.path, []).append(run)
    results, curves, skipped = [], [], []
    for key, evals in groups.items():
        if len(evals) == 1 and _run_root(evals[0]) is None:
            picked = evals
        else:
            steps = {r.step: r for r in evals}
            chosen = steps.get(step if step is not None else max(steps))
            if chosen is None:
                raise AnalysisError(
                    f"{key}: no evaluation at step {step}; steps: {', '.join(map(str, sorted(steps)))}"
                )
            picked = [chosen] + ([steps[0]] if 0 in steps and chosen.step != 0 and row is None else [])
        compared = []
        for run in picked:
            try:
                compared.append(comparison(run, row=row, recipe=recipe, tables=tables, confidence=confidence))
            except AnalysisError as err:
                if not skip_unmatched:
                    raise
                skipped.append(str(err))
        results += compared
        if compared and _run_root(picked[0]) is not None:
            curves.append((key, evals, compared[0], compared[1] if len(compared) > 1 else None))
    parts = [overview(results), *(detail(r) for r in results), test_statement(confidence)] if results else []
    parts += [f"Left out (no paper row): {s}\n" for s in skipped]
    table_md = "\n".join(["## Compared with the paper", "", *parts])
    summary: dict[str, Any] = {
        "command": "paper",
        "source": SOURCE,
        "comparisons": results,
        "skipped": skipped,
    }
    if output_dir is not None:
        out = prepare_output(output_dir)
        summary["plots"] = [
            p for key, evals, res, base in curves if (p := _curve(Path(key), evals, res, base, out))
        ]
        write_outputs(out, summary, table_md, "paper")
    summary["table"] = table_md
    return summary


def card_section(output_dir: str | os.PathLike, confidence: float = 0.95) -> str | None:
    """The model card's comparison of a run's last in-training evaluation with its paper row (None without an
    evaluation; one line when the paper has no row for the run)."""
    evals = sorted(Path(output_dir).glob("eval/step_*/summary.json"))
    if not evals:
        return None
    try:
        runs = load_eval_runs([Path(output_dir) / "eval"], need_samples=False)
        last = max((r for r in runs if r.step is not None), key=lambda r: r.step)
        result = comparison(last, confidence=confidence)
    except (AnalysisError, ValueError) as err:
        reason = str(err).split("; ")[0]  # the rest is advice for the command line
        return f"## Compared with the paper\n\nNo comparison with the paper's Tables 1 and 4: {reason}.\n"
    return "\n".join(["## Compared with the paper", "", detail(result), test_statement(confidence)])
