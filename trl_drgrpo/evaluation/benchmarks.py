"""The five evaluation benchmarks: names, Hub layouts and loading (local folder or Hub)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives on the Hub and how its columns map to ``problem`` / ``answer``.

    ``problem_columns`` / ``answer_columns`` are candidates tried in order; the first present is used.
    """

    name: str
    display: str
    hub_path: str
    hub_split: str
    problem_columns: tuple[str, ...] = ("problem",)
    answer_columns: tuple[str, ...] = ("answer",)


# Hub layouts (splits and column names) as published on the dataset cards:
# - HuggingFaceH4/MATH-500: split "test"; problem, solution, answer, subject, level, unique_id.
# - HuggingFaceH4/aime_2024: split "train"; id, problem, solution, answer, url, year.
# - AI-MO/aimo-validation-amc: split "train"; id, problem, answer (a float such as 142.0), url.
# - math-ai/minervamath: split "test" (a test.jsonl); question, answer.
# - math-ai/olympiadbench: split "test"; question, final_answer (a list of strings), ...
# The Minerva and OlympiadBench names could not be checked against the cards offline, hence the
# candidate lists ("question" before "problem", "final_answer" before "answer").
BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("aime", "AIME24", "HuggingFaceH4/aime_2024", "train"),
        BenchmarkSpec("amc", "AMC", "AI-MO/aimo-validation-amc", "train"),
        BenchmarkSpec("math", "MATH500", "HuggingFaceH4/MATH-500", "test"),
        BenchmarkSpec(
            "minerva", "Minerva", "math-ai/minervamath", "test", problem_columns=("question", "problem")
        ),
        BenchmarkSpec(
            "olympiad_bench",
            "OlympiadBench",
            "math-ai/olympiadbench",
            "test",
            problem_columns=("question", "problem"),
            answer_columns=("final_answer", "answer"),
        ),
    )
}
_BENCHMARK_ALIASES = {
    "aime24": "aime",
    "aime_2024": "aime",
    "math500": "math",
    "math_500": "math",
    "minerva_math": "minerva",
    "minervamath": "minerva",
    "olympiad": "olympiad_bench",
    "olympiadbench": "olympiad_bench",
}


def resolve_benchmarks(benchmarks: str | Sequence[str]) -> list[str]:
    """Canonical benchmark names from a comma list or a sequence; unknown names raise ``ValueError``."""
    names = benchmarks.split(",") if isinstance(benchmarks, str) else list(benchmarks)
    resolved: list[str] = []
    for raw in names:
        key = str(raw).strip().lower()
        if not key:
            continue
        key = _BENCHMARK_ALIASES.get(key, key)
        if key not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {raw!r}; known benchmarks: {', '.join(BENCHMARKS)}")
        if key not in resolved:
            resolved.append(key)
    if not resolved:
        raise ValueError(f"no benchmark given; known benchmarks: {', '.join(BENCHMARKS)}")
    return resolved


def _pick_column(columns: Sequence[str], candidates: Sequence[str], role: str, where: str) -> str:
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(
        f"{where} has no {role} column: expected one of {list(candidates)}, found columns {list(columns)}"
    )


def normalize_columns(dataset: Any, spec: BenchmarkSpec, where: str | None = None) -> Any:
    """Return ``dataset`` with exactly the columns ``problem`` and ``answer``."""
    where = where or f"benchmark {spec.name!r}"
    columns = list(dataset.column_names)
    problem = _pick_column(columns, ("problem", *spec.problem_columns), "problem", where)
    answer = _pick_column(columns, ("answer", *spec.answer_columns), "answer", where)
    dataset = dataset.select_columns([problem] if problem == answer else [problem, answer])
    if problem != "problem":
        dataset = dataset.rename_column(problem, "problem")
    if answer != "answer":
        dataset = dataset.rename_column(answer, "answer")
    return dataset


def load_benchmark(name: str, data: str | os.PathLike | Any | None = None) -> Any:
    """Load one benchmark as a ``datasets.Dataset`` with columns ``problem`` and ``answer``.

    Args:
        name: Benchmark name (see ``BENCHMARKS``).
        data: ``None`` for the benchmark's own Hub dataset; a ``load_from_disk`` folder, a Hub id
            or an in-memory ``DatasetDict`` holding one split per benchmark (like the paper's
            evaluation suite).
    """
    import datasets

    spec = BENCHMARKS[resolve_benchmarks([name])[0]]
    if data is None:
        try:
            dataset = datasets.load_dataset(spec.hub_path, split=spec.hub_split)
        except Exception as err:  # offline, gated, renamed...
            raise RuntimeError(
                f"could not load benchmark {spec.name!r} from the Hub ({spec.hub_path}, split {spec.hub_split!r}): "
                f"{err}. Pass data=<folder> (a load_from_disk DatasetDict with one split per benchmark)."
            ) from err
        return normalize_columns(dataset, spec, f"{spec.hub_path} ({spec.name})")

    if isinstance(data, datasets.DatasetDict):
        suite, where = data, "the given DatasetDict"
    elif os.path.isdir(data):
        suite, where = datasets.load_from_disk(str(data)), str(data)
    elif os.path.exists(data):
        raise ValueError(f"data must be a load_from_disk folder or a Hub dataset id, got the file {data}")
    elif str(data).startswith((os.sep, ".", "~")):
        raise ValueError(f"data folder not found: {data}")
    else:
        try:
            suite, where = datasets.load_dataset(str(data)), str(data)
        except Exception as err:
            raise RuntimeError(f"could not load the evaluation data {data!r} from the Hub: {err}") from err
    if not isinstance(suite, datasets.DatasetDict):
        raise ValueError(
            f"{where} must be a DatasetDict with one split per benchmark, got a single {type(suite).__name__}"
        )
    split = next(
        (s for s in (spec.name, *[a for a, c in _BENCHMARK_ALIASES.items() if c == spec.name]) if s in suite),
        None,
    )
    if split is None:
        raise ValueError(f"{where} has no split for benchmark {spec.name!r}; its splits are {list(suite)}")
    return normalize_columns(suite[split], spec, f"{where} split {split!r}")
