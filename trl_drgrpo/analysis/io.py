"""Reading the inputs of the analyses (evaluation folders, JSONL files, training logs) and writing results.

An *evaluation folder* is what ``trl_drgrpo.evaluation.evaluate`` (or the in-training
``EvaluationCallback``, under ``<run>/eval/step_<N>``) writes: ``samples.jsonl``, ``summary.json`` and
``config.json``. Fields are read defensively: only ``response`` (and ``score`` for accuracies) is needed
per sample. Bad input raises ``AnalysisError`` with a one-line message, which the CLI prints.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.report import CONFIG_FILE, SAMPLES_FILE, SUMMARY_FILE, atomic_write_text, read_samples
from ..templates import available_templates, get_template

STATE_FILE = "trainer_state.json"
_STEP_RE = re.compile(r"^(?:step|checkpoint|global_step)[-_](\d+)$")


class AnalysisError(ValueError):
    """Bad analysis input (missing file, missing metric, empty or mixed folder): one-line message."""


@dataclass
class EvalRun:
    """One evaluation: its samples and/or summary, and what produced it (model, template, training step)."""

    path: Path
    records: list[dict] = field(default_factory=list)
    summary: dict | None = None
    config: dict = field(default_factory=dict)
    model: str | None = None
    template: str | None = None
    step: int | None = None
    label: str = ""


# ---- small helpers ---------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnalysisError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except OSError as err:
        raise AnalysisError(f"cannot read {path}: {err.strerror}") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL file (a truncated last line is dropped); ``AnalysisError`` on bad content."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"file not found: {path}")
    try:
        records = read_samples(path)
    except ValueError as err:
        raise AnalysisError(str(err)) from None
    if not all(isinstance(r, dict) for r in records):
        raise AnalysisError(f"{path} must hold one JSON object per line")
    return records


def step_from_path(path: str | os.PathLike) -> int | None:
    """Training step named by the innermost ``step_<N>`` / ``checkpoint-<N>`` part of ``path``, or None."""
    for part in reversed(Path(path).parts):
        match = _STEP_RE.match(part)
        if match:
            return int(match.group(1))
    return None


def _sort_key(path: Path) -> tuple:
    # step_10 after step_9: numbers in names compare as numbers
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path)))


def infer_template(record: Mapping) -> str | None:
    """The registered template whose prompt for ``record['problem']`` is ``record['prompt']``, if any."""
    problem, prompt = record.get("problem"), record.get("prompt")
    if not isinstance(problem, str) or not isinstance(prompt, str):
        return None
    for name in available_templates():
        try:
            if get_template(name).format(problem) == prompt:
                return name
        except (KeyError, IndexError, ValueError):
            continue
    return None


# ---- evaluation folders ----------------------------------------------------------------------------


def find_eval_dirs(root: Path) -> list[Path]:
    """Folders at or below ``root`` holding ``samples.jsonl`` or ``summary.json`` of an evaluation."""
    found = set()
    for name in (SAMPLES_FILE, SUMMARY_FILE):
        for p in root.rglob(name):
            if p.is_file() and (name == SAMPLES_FILE or _is_eval_summary(p)):
                found.add(p.parent)
    return sorted(found, key=_sort_key)


def _is_eval_summary(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return _is_eval_dict(data)


def _is_eval_dict(data: Any) -> bool:
    # an analysis' own summary.json has a "command" key; an evaluation's maps benchmarks to metrics
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), dict) and "command" not in data


def _model_and_step(config: Mapping, summary: Mapping | None, folder: Path) -> tuple[str | None, int | None]:
    model_path = config.get("model") or (summary or {}).get("config", {}).get("model")
    name = config.get("model_name") or (summary or {}).get("model")
    step = (summary or {}).get("step", config.get("step"))
    if step is None and model_path:
        step = step_from_path(str(model_path))
    if step is None:
        step = step_from_path(folder)
    # A checkpoint folder evaluated on its own is named after its run, not "checkpoint-N".
    if name and _STEP_RE.match(str(name)) and model_path:
        parent = Path(str(model_path).rstrip("/")).parent.name
        name = parent or name
    if not name and model_path:
        name = Path(str(model_path).rstrip("/")).name
    return (str(name) if name else None), (int(step) if step is not None else None)


def load_eval_run(
    path: str | os.PathLike, *, need_samples: bool = True, template: str | None = None
) -> EvalRun:
    """Load one evaluation folder, or a JSONL file of samples (any file with a ``response`` per line).

    The template comes from ``config.json`` / ``summary.json``, else ``template``; the prompts of the
    samples must all belong to it (``AnalysisError`` on a mixed folder).
    """
    path = Path(path)
    if not path.exists():
        raise AnalysisError(f"not found: {path}")
    if path.is_file() and path.suffix == ".json":  # a summary.json: its folder is the evaluation
        folder, summary_path = path.parent, path
        samples_path, config_path = path.parent / SAMPLES_FILE, path.parent / CONFIG_FILE
    elif path.is_file():
        folder, samples_path = path.parent, path
        summary_path = config_path = None
        if path.name == SAMPLES_FILE:
            summary_path, config_path = folder / SUMMARY_FILE, folder / CONFIG_FILE
    else:
        folder, samples_path = path, path / SAMPLES_FILE
        summary_path, config_path = path / SUMMARY_FILE, path / CONFIG_FILE
        if not samples_path.is_file() and not summary_path.is_file():
            raise AnalysisError(f"{path} holds no {SAMPLES_FILE} or {SUMMARY_FILE}")
    summary = _read_json(summary_path) if summary_path and summary_path.is_file() else None
    if summary is not None and not _is_eval_dict(summary):
        raise AnalysisError(f"{summary_path} is not an evaluation summary (no 'benchmarks' mapping)")
    config = _read_json(config_path) if config_path and config_path.is_file() else {}
    if not config and summary is not None:
        config = dict(summary.get("config") or {})
    wanted = need_samples or summary is None
    records = read_jsonl(samples_path) if wanted and samples_path.is_file() else []
    if not records and summary is None:
        raise AnalysisError(f"no samples in {samples_path} and no {SUMMARY_FILE} in {folder}")
    if need_samples and not records:
        where = samples_path if samples_path.is_file() else f"{folder} (no {SAMPLES_FILE})"
        raise AnalysisError(f"no samples in {where}")

    templates = {t for t in (config.get("template"), (summary or {}).get("template")) if t}
    if len(templates) > 1:
        raise AnalysisError(
            f"{folder}: config.json and summary.json name different templates {sorted(templates)}"
        )
    counts: dict[str, int] = {}
    for r in records:
        inferred = infer_template(r)
        if inferred is not None:
            counts[inferred] = counts.get(inferred, 0) + 1
    if len(counts) > 1:
        detail = ", ".join(f"{k} ({v} samples)" for k, v in sorted(counts.items()))
        raise AnalysisError(f"{path} mixes samples of several templates: {detail}")
    if templates and counts and set(counts) != templates:
        raise AnalysisError(
            f"{path}: its prompts use the {next(iter(counts))!r} template but its config says {next(iter(templates))!r}"
        )
    name = next(iter(templates), None) or next(iter(counts), None) or template
    if template is not None and name is not None and get_template(template).name != get_template(name).name:
        raise AnalysisError(f"{path} was evaluated with the {name!r} template, not {template!r}")
    model, step = _model_and_step(config, summary, folder)
    if model is None and path.is_file() and path.name not in (SAMPLES_FILE, SUMMARY_FILE):
        model = path.stem
    run = EvalRun(path, records, summary, config, model, name, step)
    run.label = default_label(run)
    return run


def default_label(run: EvalRun) -> str:
    """``model / template`` (``@ step N`` for a training checkpoint)."""
    parts = [p for p in (run.model, run.template) if p]
    fallback = run.path.parent.name if run.path.name in (SAMPLES_FILE, SUMMARY_FILE) else run.path.name
    label = " / ".join(parts) or fallback
    return label + (f" @ step {run.step}" if run.step is not None else "")


def load_eval_runs(
    paths: Sequence[str | os.PathLike],
    *,
    need_samples: bool = True,
    template: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[EvalRun]:
    """Evaluation runs from files or folders; a folder without its own results is searched below."""
    if not paths:
        raise AnalysisError("no input given")
    runs: list[EvalRun] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise AnalysisError(f"not found: {path}")
        if (
            path.is_dir()
            and not (path / SAMPLES_FILE).is_file()
            and not _is_eval_summary(path / SUMMARY_FILE)
        ):
            found = find_eval_dirs(path)
            if not found:
                raise AnalysisError(
                    f"{path} holds no evaluation ({SAMPLES_FILE} or {SUMMARY_FILE}) at any depth"
                )
            runs += [load_eval_run(p, need_samples=need_samples, template=template) for p in found]
        else:
            runs.append(load_eval_run(path, need_samples=need_samples, template=template))
    if labels:
        if len(labels) != len(runs):
            raise AnalysisError(f"{len(labels)} labels given for {len(runs)} evaluations")
        for run, label in zip(runs, labels, strict=True):
            run.label = label
    _dedupe_labels(runs)
    return runs


def _dedupe_labels(runs: Sequence[EvalRun]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    for run in runs:
        if seen[run.label] > 1:
            run.label = f"{run.label} ({run.path})"


def question_key(record: Mapping, line: int) -> tuple:
    """Identity of the question a sample answers: (benchmark, index), else its problem text, else its line."""
    if "index" in record:
        return (str(record.get("benchmark", "")), record["index"])
    for col in ("problem", "question", "prompt"):
        if isinstance(record.get(col), str):
            return ("", record[col])
    return ("", line)


def is_correct(record: Mapping, column: str = "score") -> bool | None:
    """Whether a sample is graded correct (``score > 0``), None when it has no grade."""
    value = record.get(column)
    if value is None or isinstance(value, str):
        return None
    return float(value) > 0


# ---- training runs ---------------------------------------------------------------------------------


def _state_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = [path / STATE_FILE] if (path / STATE_FILE).is_file() else []
    files += sorted(path.glob(f"checkpoint-*/{STATE_FILE}"), key=_sort_key)
    return files


def load_training_log(path: str | os.PathLike) -> list[dict]:
    """The training ``log_history`` of a run folder (its own or its checkpoints' ``trainer_state.json``).

    The most advanced state file is used; entries logged only in the others (later steps) are added.
    In-training evaluations under ``<run>/eval/step_<N>/summary.json`` fill in ``eval/*`` metrics that
    the log lacks.
    """
    path = Path(path)
    if not path.exists():
        raise AnalysisError(f"not found: {path}")
    files = _state_files(path)
    if not files:
        raise AnalysisError(f"no {STATE_FILE} in {path} or its checkpoint-* folders")
    states = []
    for f in files:
        state = _read_json(f)
        if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
            raise AnalysisError(f"{f} has no 'log_history' (expected a transformers {STATE_FILE})")
        states.append(state)
    best = max(range(len(states)), key=lambda i: (states[i].get("global_step") or 0, -i))
    history = [dict(e) for e in states[best]["log_history"] if isinstance(e, dict)]
    last = max((e.get("step", 0) for e in history), default=0)
    for i, state in enumerate(states):
        if i != best:
            history += [
                dict(e) for e in state["log_history"] if isinstance(e, dict) and e.get("step", 0) > last
            ]
    history = [_tracker_names(e) for e in history]
    history.sort(key=lambda e: e.get("step", 0))
    run_dir = path if path.is_dir() else path.parent
    history += _eval_entries(run_dir, history)
    return history


def _tracker_names(entry: dict) -> dict:
    """In-training evaluation keys as the trackers show them: ``eval_<benchmark>/x`` -> ``eval/<benchmark>/x``."""
    return {("eval/" + k[5:] if k.startswith("eval_") and "/" in k else k): v for k, v in entry.items()}


def _eval_entries(run_dir: Path, history: Sequence[Mapping]) -> list[dict]:
    logged = {e["step"] for e in history if "step" in e and "eval/average/accuracy" in e}
    entries = []
    for summary_path in sorted((run_dir / "eval").glob(f"step_*/{SUMMARY_FILE}"), key=_sort_key):
        step = step_from_path(summary_path.parent)
        if step is None or step in logged:
            continue
        summary = _read_json(summary_path)
        if not isinstance(summary, dict) or "benchmarks" not in summary:
            continue
        entry: dict[str, Any] = {"step": step}
        for name, m in summary["benchmarks"].items():
            for key in ("accuracy", "mean_response_tokens", "truncated"):
                if key in m:
                    entry[f"eval/{name}/{key}"] = m[key]
        if (summary.get("average") or {}).get("accuracy") is not None:
            entry["eval/average/accuracy"] = summary["average"]["accuracy"]
        entries.append(entry)
    return entries


def series(history: Iterable[Mapping], names: Sequence[str]) -> tuple[str | None, list[int], list[float]]:
    """``(metric, steps, values)`` of the first of ``names`` that ``history`` logs (one value per step)."""
    history = list(history)
    for name in names:
        points: dict[int, float] = {}
        for e in history:
            value = e.get(name)
            if "step" in e and isinstance(value, (int, float)) and not isinstance(value, bool):
                points[int(e["step"])] = float(value)  # a step logged twice keeps its last value
        if points:
            steps = sorted(points)
            return name, steps, [points[s] for s in steps]
    return None, [], []


# ---- outputs ---------------------------------------------------------------------------------------


def prepare_output(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir`` (``AnalysisError`` if it is a file)."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"output_dir {out} exists and is a file")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(output_dir: Path, summary: dict, table: str, table_name: str) -> None:
    """Write ``summary.json`` and the Markdown table ``<table_name>.md`` atomically."""
    atomic_write_text(output_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(output_dir / f"{table_name}.md", table)


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """``value`` as a percentage, ``–`` when missing."""
    return "–" if value is None else f"{100 * value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align_right_from: int = 1) -> str:
    """A Markdown table; columns from ``align_right_from`` on are right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if i >= align_right_from else "---" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
