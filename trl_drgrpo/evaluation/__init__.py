"""Benchmark evaluation of math reasoning models (the paper's Table 1 / Figure 1 protocol).

``evaluate`` generates answers for AIME24, AMC, MATH500, Minerva Math and OlympiadBench with vLLM (GPU)
or transformers ``generate`` (CPU or GPU), grades them and writes, atomically and resumably, into
``output_dir``: ``samples.jsonl`` (one line per sample), ``summary.json`` (per-benchmark metrics and the
full configuration) and ``results.md`` (the paper's table layout).

Modules: ``benchmarks`` (names, Hub layouts, loading), ``generation`` (what the backends share), ``backends`` /
``vllm_backend`` (generation), ``scoring`` (grading and metrics), ``report`` (files and tables), ``run``
(``evaluate``), ``callback`` (evaluation during training).

Names are loaded on first use, so importing one light module (``benchmarks``: names and Hub layouts) does not
load the backends, ``datasets`` or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BACKENDS": "backends",
    "CHAT_END": "backends",
    "Generation": "backends",
    "GenerationBackend": "backends",
    "TransformersBackend": "backends",
    "effective_stops": "backends",
    "make_backend": "backends",
    "resolve_backend": "backends",
    "split_special_stops": "backends",
    "truncate_at_stop": "backends",
    "vllm_available": "backends",
    "BENCHMARKS": "benchmarks",
    "BenchmarkSpec": "benchmarks",
    "load_benchmark": "benchmarks",
    "normalize_columns": "benchmarks",
    "resolve_benchmarks": "benchmarks",
    "CONFIG_FILE": "report",
    "RESULTS_FILE": "report",
    "SAMPLES_FILE": "report",
    "SUMMARY_FILE": "report",
    "append_jsonl": "report",
    "atomic_write_text": "report",
    "complete_records": "report",
    "merge_summaries": "report",
    "prepare_output_dir": "report",
    "read_samples": "report",
    "results_table": "report",
    "write_results": "report",
    "RESULT_KEYS": "run",
    "EvaluationArguments": "run",
    "evaluate": "run",
    "Problem": "scoring",
    "build_summary": "scoring",
    "generate_and_grade": "scoring",
    "pass_at_k": "scoring",
    "summarize_benchmark": "scoring",
    "VLLMBackend": "vllm_backend",
    "EvaluationCallback": "callback",
}

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
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
