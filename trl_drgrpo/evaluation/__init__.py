"""Benchmark evaluation of math reasoning models (the paper's Table 1 / Figure 1 protocol).

``evaluate`` generates answers for AIME24, AMC, MATH500, Minerva Math and OlympiadBench with vLLM (GPU)
or transformers ``generate`` (CPU or GPU), grades them and writes, atomically and resumably, into
``output_dir``: ``samples.jsonl`` (one line per sample), ``summary.json`` (per-benchmark metrics and the
full configuration) and ``results.md`` (the paper's table layout).

Modules: ``benchmarks`` (names, Hub layouts, loading), ``backends`` / ``vllm_backend`` (generation),
``scoring`` (grading and metrics), ``report`` (files and tables), ``run`` (``evaluate``), ``callback``
(evaluation during training).
"""

from __future__ import annotations

import importlib
from typing import Any

from .backends import (
    BACKENDS,
    CHAT_END,
    Generation,
    GenerationBackend,
    TransformersBackend,
    effective_stops,
    make_backend,
    resolve_backend,
    split_special_stops,
    truncate_at_stop,
    vllm_available,
)
from .benchmarks import BENCHMARKS, BenchmarkSpec, load_benchmark, normalize_columns, resolve_benchmarks
from .report import (
    CONFIG_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    append_jsonl,
    atomic_write_text,
    complete_records,
    merge_summaries,
    prepare_output_dir,
    read_samples,
    results_table,
    write_results,
)
from .run import RESULT_KEYS, EvaluationArguments, evaluate
from .scoring import Problem, build_summary, generate_and_grade, pass_at_k, summarize_benchmark
from .vllm_backend import VLLMBackend

__all__ = [
    "BACKENDS",
    "BENCHMARKS",
    "CHAT_END",
    "CONFIG_FILE",
    "RESULTS_FILE",
    "RESULT_KEYS",
    "SAMPLES_FILE",
    "SUMMARY_FILE",
    "BenchmarkSpec",
    "EvaluationArguments",
    "EvaluationCallback",
    "Generation",
    "GenerationBackend",
    "Problem",
    "TransformersBackend",
    "VLLMBackend",
    "append_jsonl",
    "atomic_write_text",
    "build_summary",
    "complete_records",
    "effective_stops",
    "evaluate",
    "generate_and_grade",
    "load_benchmark",
    "make_backend",
    "merge_summaries",
    "normalize_columns",
    "pass_at_k",
    "prepare_output_dir",
    "read_samples",
    "resolve_backend",
    "resolve_benchmarks",
    "results_table",
    "split_special_stops",
    "summarize_benchmark",
    "truncate_at_stop",
    "vllm_available",
    "write_results",
]


def __getattr__(name: str) -> Any:
    # The callback imports transformers; load it only when asked for.
    if name == "EvaluationCallback":
        return importlib.import_module(".callback", __name__).EvaluationCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
