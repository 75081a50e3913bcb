"""Output files (atomic, resumable ``samples.jsonl``) and the paper-layout results table."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from .benchmarks import BENCHMARKS

logger = logging.getLogger(__name__)


SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.md"
CONFIG_FILE = "config.json"


def _table_header() -> list[str]:
    cols = [spec.display for spec in BENCHMARKS.values()]
    return [
        "| Model | Template | " + " | ".join(cols) + " | Avg. |",
        "|---|---|" + "---:|" * (len(cols) + 1),
    ]


def _table_row(summary: dict) -> str:
    cells = []
    for name in BENCHMARKS:
        metrics = summary["benchmarks"].get(name)
        cells.append(f"{100 * metrics['accuracy']:.1f}" if metrics else "–")
    avg = summary.get("average", {}).get("accuracy")
    partial = len(summary["benchmarks"]) < len(BENCHMARKS)
    avg_cell = "–" if avg is None else f"{100 * avg:.1f}" + ("*" if partial else "")
    return f"| {summary.get('model')} | {summary.get('template')} | " + " | ".join(cells) + f" | {avg_cell} |"


def results_table(summaries: Sequence[dict]) -> str:
    """A Markdown table (paper layout: one row per model + template, accuracies in %)."""
    lines = _table_header() + [_table_row(s) for s in summaries]
    if any(len(s["benchmarks"]) < len(BENCHMARKS) for s in summaries):
        lines.append("")
        lines.append("\\* average over the benchmarks evaluated only.")
    return "\n".join(lines) + "\n"


def merge_summaries(paths: Sequence[str | os.PathLike]) -> str:
    """One results table from several ``summary.json`` files (or folders holding one)."""
    if not paths:
        raise ValueError("merge_summaries needs at least one summary.json path")
    summaries = []
    for path in paths:
        p = Path(path)
        p = p / SUMMARY_FILE if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"summary file not found: {p}")
        summary = json.loads(p.read_text())
        if "benchmarks" not in summary:
            raise ValueError(f"{p} is not an evaluation summary (no 'benchmarks' key)")
        summaries.append(summary)
    return results_table(summaries)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (mode 0666 less the umask)."""
    path = Path(path)
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # as open() would, unlike mkstemp's 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append records as JSON lines, flushed and fsynced."""
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_samples(path: str | os.PathLike) -> list[dict]:
    """Read ``samples.jsonl``; a truncated last line (a killed writer) is dropped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[i + 1 :]):
                raise ValueError(f"{path} line {i + 1} is not valid JSON") from None
            logger.warning("dropping a truncated last line in %s", path)
    return records


def complete_records(records: Sequence[dict], n: int) -> list[dict]:
    """Keep the records of problems that have all ``n`` samples (first occurrence of each sample)."""
    groups: dict[tuple[str, int], dict[int, dict]] = {}
    for r in records:
        groups.setdefault((r["benchmark"], r["index"]), {}).setdefault(r["sample"], r)
    return [samples[k] for samples in groups.values() if set(samples) == set(range(n)) for k in range(n)]


def check_output_dir(output_dir: str | os.PathLike, config: dict, result_keys: Sequence[str]) -> list[dict]:
    """The complete records of the run in ``output_dir`` that ``config`` resumes (none for a new run); writes nothing.

    Raises ``ValueError`` when ``output_dir`` is a file or holds samples of a run whose ``result_keys`` differ.
    A ``config.json`` without samples (a start that failed) does not bind the next run.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {out} exists and is a file, not a directory")
    config_path, samples_path = out / CONFIG_FILE, out / SAMPLES_FILE
    records = read_samples(samples_path)
    if config_path.exists() and records:
        saved = json.loads(config_path.read_text())
        diff = {k: (saved.get(k), config.get(k)) for k in result_keys if saved.get(k) != config.get(k)}
        if diff:
            details = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out} holds a run with a different configuration ({details}); "
                "use another output_dir or delete that one"
            )
    elif records:
        raise ValueError(f"{out} has {SAMPLES_FILE} but no {CONFIG_FILE}; cannot tell how it was produced")
    return complete_records(records, config["n"])


def start_output_dir(output_dir: str | os.PathLike, config: dict, kept: Sequence[dict]) -> None:
    """Once the run really starts: create ``output_dir``, write ``config.json``, drop incomplete sample lines."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    if samples_path.exists() and (
        len(kept) != len(read_samples(samples_path)) or not _ends_cleanly(samples_path)
    ):
        logger.warning("%s: dropping incomplete sample lines before resuming", out)
        atomic_write_text(samples_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")


def prepare_output_dir(output_dir: str | os.PathLike, config: dict, result_keys: Sequence[str]) -> list[dict]:
    """:func:`check_output_dir` then :func:`start_output_dir`; returns the complete records already there."""
    kept = check_output_dir(output_dir, config, result_keys)
    start_output_dir(output_dir, config, kept)
    return kept


def _ends_cleanly(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def write_results(output_dir: str | os.PathLike, summary: dict) -> None:
    """Write ``summary.json`` and ``results.md`` atomically."""
    out = Path(output_dir)
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / RESULTS_FILE, results_table([summary]))
