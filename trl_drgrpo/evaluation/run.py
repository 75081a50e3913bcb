"""``evaluate``: the entry point that ties benchmarks, backend, grading and output files together."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data import check_model_source
from ..templates import DEFAULT_ENDINGS, Template, get_template
from .backends import GenerationBackend, effective_stops, make_backend, resolve_backend
from .benchmarks import load_benchmark, resolve_benchmarks
from .generation import check_sampling
from .provenance import add_provenance
from .report import SAMPLES_FILE, append_jsonl, check_output_dir, start_output_dir, write_results
from .scoring import Problem, build_summary, generate_and_grade, shared_grader
from .vllm_backend import VLLMBackend

logger = logging.getLogger(__name__)


# Configuration fields that change the results: resuming with other values is refused.
# The paper's evaluate_model.py (understand-r1-zero) runs vLLM with max_model_len=4096.
PAPER_MAX_MODEL_LEN = 4096

RESULT_KEYS = (
    "model",
    "template",
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "data",
    "stop",
    "revision",
    "dtype",
    "reward",
    "answer_format",
)


def item_seed(seed: int, benchmark: str, index: int) -> int:
    """The sampling seed of one problem: a function of (seed, benchmark, index) only, so a resumed run, or any
    chunking, draws the same samples for it as an uninterrupted run."""
    digest = hashlib.sha256(f"{seed}/{benchmark}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seeded_groups(
    problems: Sequence[Problem], backend: Any, seed: int, temperature: float
) -> list[tuple[list[Problem], int | list[int]]]:
    """Generation calls for ``problems`` with their seeds: one call (greedy, or a backend that takes a seed per
    prompt: ``per_prompt_seeds = True``), else one call per problem with that problem's seed."""
    if temperature == 0:
        return [(list(problems), seed)]
    seeds = [item_seed(seed, p.benchmark, p.index) for p in problems]
    if getattr(backend, "per_prompt_seeds", False):
        return [(list(problems), seeds)]
    return [([p], s) for p, s in zip(problems, seeds, strict=True)]


def _model_id(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    return str(getattr(model, "name_or_path", None) or type(model).__name__)


def evaluate(
    model: Any,
    template: str | Template,
    benchmarks: str | Sequence[str],
    backend: str | GenerationBackend | None,
    output_dir: str | os.PathLike,
    data: str | os.PathLike | Any | None = None,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 3000,
    limit: int | None = None,
    *,
    tokenizer: Any = None,
    batch_size: int = 8,
    seed: int = 0,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    chunk_size: int | None = None,
    stop: Sequence[str] | None = None,
    endings: str = DEFAULT_ENDINGS,
    model_name: str | None = None,
    max_model_len: int | None = PAPER_MAX_MODEL_LEN,
    dtype: str | None = None,
    revision: str | None = None,
    gpu_memory_utilization: float = 0.9,
    show_progress: bool = True,
    on_chunk: Callable[[list[dict]], None] | None = None,
    reward: str = "math",
    answer_format: str = "paper",
) -> dict:
    """Evaluate ``model`` on ``benchmarks``, write the results into ``output_dir`` and return the summary.

    Args:
        model: Hub id or folder (or a loaded model with ``tokenizer`` for the transformers backend).
        template: Template name or object (``r1``, ``qwen_math``, ``no``).
        benchmarks: Comma list or sequence among ``aime, amc, math, minerva, olympiad_bench``.
        backend: ``"vllm"``, ``"transformers"``, ``"auto"``/``None``, or an object with ``generate``.
        output_dir: Results folder; an interrupted run there is resumed.
        data: ``None`` (Hub datasets) or a ``load_from_disk`` folder / Hub id with one split per benchmark.
        n: Samples per problem (accuracy is avg@n; pass@k for every k <= n).
        temperature: 0 for greedy decoding.
        top_p: Nucleus sampling threshold.
        max_tokens: Generation budget per response.
        limit: Evaluate only the first ``limit`` problems of each benchmark.
        tokenizer: Tokenizer for a model passed as an object.
        batch_size: Prompts per transformers ``generate`` call.
        seed: Sampling seed.
        tensor_parallel_size: vLLM tensor parallel size (GPUs per engine).
        data_parallel_size: vLLM engines, each on its own GPUs, sharing the prompts.
        chunk_size: Problems generated between two saves (default: 4 batches, or 256 with vLLM).
        stop: Extra stop strings on top of the template's endings.
        endings: Where responses end (``trl_drgrpo.templates.ENDINGS``; default: the paper's, no ``<|im_end|>``).
        model_name: Name shown in the table (default: the model's folder name).
        max_model_len: vLLM context length (prompt + response), 4096 as the paper's ``evaluate_model.py``; a
            response that reaches it stops unfinished (truncated). ``None`` or 0: the model's own limit.
        dtype: Weights' dtype for loading by name (``bfloat16``, ``float16``, ``float32``; None: the checkpoint's).
        revision: Hub revision (branch, tag or commit) of a model given by id.
        gpu_memory_utilization: Share of each GPU's memory vLLM may use.
        show_progress: Show progress bars.
        on_chunk: Called with the records of each saved chunk.
        reward: Grader by name (``math``, ``math_verify`` or registered; see ``trl_drgrpo.rewards.registry``).
        answer_format: ``paper`` (the paper's extraction rules) or ``lenient``.
    """
    template = get_template(template)
    names = resolve_benchmarks(benchmarks)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    check_sampling(n, temperature, top_p, max_tokens)
    backend_name = resolve_backend(backend) if backend is None or isinstance(backend, str) else None
    max_model_len = max_model_len or None
    config = {
        "model": _model_id(model),
        "model_name": model_name or Path(_model_id(model).rstrip("/")).name,
        "template": template.name,
        "benchmarks": names,
        "backend": backend_name or type(backend).__name__,
        "data": None if data is None or not isinstance(data, (str, os.PathLike)) else str(data),
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "limit": limit,
        "seed": seed if temperature > 0 else None,  # greedy results do not depend on the seed
        "endings": template.endings(endings).policy,
        "stop": list(effective_stops(template, stop, endings)),
        "batch_size": batch_size,
        "tensor_parallel_size": tensor_parallel_size,
        "data_parallel_size": data_parallel_size,
        "max_model_len": max_model_len if backend_name == "vllm" else None,
        "revision": revision,
        "dtype": dtype,
        "reward": reward,
        "answer_format": answer_format,
    }
    grader = shared_grader(reward, template, answer_format)  # fails early on an unknown name; warm pool
    if backend_name is not None and isinstance(model, (str, os.PathLike)):
        check_model_source(str(model))  # one line instead of transformers' invalid-repo-id traceback
    datasets_by_name = {name: load_benchmark(name, data) for name in names}
    # Nothing is written before the backend has started (a failed start leaves no config.json behind).
    records = check_output_dir(output_dir, config, RESULT_KEYS)
    done = {(r["benchmark"], r["index"]) for r in records}

    gen_backend: Any = backend
    if backend_name is not None:
        gen_backend = make_backend(
            backend_name,
            model,
            tokenizer=tokenizer,
            batch_size=batch_size,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            revision=revision,
            show_progress=show_progress,
        )
    start_output_dir(output_dir, config, records)
    chunk = chunk_size or (256 if isinstance(gen_backend, VLLMBackend) else 4 * batch_size)
    samples_path = Path(output_dir) / SAMPLES_FILE
    selected: set[tuple[str, int]] = set()
    try:
        for name, dataset in datasets_by_name.items():
            count = len(dataset) if limit is None else min(limit, len(dataset))
            todo = []
            for i in range(count):
                selected.add((name, i))
                if (name, i) not in done:
                    row = dataset[i]
                    todo.append(Problem(name, i, row["problem"], row["answer"]))
            bar = tqdm(total=count, initial=count - len(todo), desc=name, disable=not show_progress)
            for start in range(0, len(todo), chunk):
                new = []
                part = todo[start : start + chunk]
                for group, group_seed in seeded_groups(part, gen_backend, seed, temperature):
                    new += generate_and_grade(
                        gen_backend,
                        template,
                        group,
                        n=n,
                        temperature=temperature,
                        top_p=top_p,
                        max_tokens=max_tokens,
                        seed=group_seed,
                        stop=config["stop"],
                        grader=grader,
                    )
                append_jsonl(samples_path, new)
                records.extend(new)
                if on_chunk is not None:
                    on_chunk(new)
                bar.update(len(todo[start : start + chunk]))
            bar.close()
    finally:
        if gen_backend is not backend and hasattr(gen_backend, "close"):
            gen_backend.close()

    kept = [r for r in records if (r["benchmark"], r["index"]) in selected]
    summary = build_summary(kept, names, n, config)
    add_provenance(
        summary,
        kept,
        model=model,
        revision=revision,
        dtype=dtype,
        datasets_by_name=datasets_by_name,
        template=template,
        limit=limit,
    )
    write_results(output_dir, summary)
    return summary


@dataclass
class EvaluationArguments:
    """Arguments of ``recipes/evaluate.py`` (also readable from a YAML file with ``--config``)."""

    model: str | None = field(
        default=None, metadata={"help": "Hub id or local folder of the model to evaluate."}
    )
    template: str = field(default="qwen_math", metadata={"help": "Prompt template: r1, qwen_math or no."})
    reward: str = field(
        default="math",
        metadata={"help": "Grader by name: math, math_verify, registered, or module.path:function."},
    )
    answer_format: str = field(
        default="paper",
        metadata={
            "help": "Answer extraction: paper (the paper's rules) or lenient.",
            "choices": ["paper", "lenient"],
        },
    )
    benchmarks: str = field(
        default="aime,amc,math,minerva,olympiad_bench",
        metadata={"help": "Comma-separated benchmarks among aime, amc, math, minerva, olympiad_bench."},
    )
    backend: str = field(
        default="auto",
        metadata={
            "help": "vllm, transformers or auto (vllm if it runs on a GPU here, else transformers; vLLM's CPU build only by name)."
        },
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "load_from_disk folder or Hub id with one split per benchmark; default: each benchmark's Hub dataset."
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Results folder (resumed if it holds a run)."}
    )
    n: int = field(default=1, metadata={"help": "Samples per problem (accuracy = avg@n)."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    max_tokens: int = field(default=3000, metadata={"help": "Maximum generated tokens per response."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N problems of each benchmark."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call (transformers backend)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallel size."})
    data_parallel_size: int = field(
        default=1, metadata={"help": "vLLM data-parallel engines (prompts sharded)."}
    )
    max_model_len: int | None = field(
        default=PAPER_MAX_MODEL_LEN,
        metadata={
            "help": "vLLM context length (prompt + response; the paper's evaluation: 4096). A response that reaches "
            "it stops unfinished and counts as truncated. 0: the model's own limit."
        },
    )
    dtype: str | None = field(
        default=None,
        metadata={"help": "Weights' dtype: bfloat16, float16 or float32 (default: the checkpoint's own)."},
    )
    revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of the model (default: main)."}
    )
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "Share of each GPU's memory vLLM may use (vllm backend)."}
    )
    chunk_size: int | None = field(
        default=None,
        metadata={"help": "Problems generated between two saves (default: 4 batches; 256 with vLLM)."},
    )
    model_name: str | None = field(
        default=None, metadata={"help": "Name shown in results.md (default: folder name)."}
    )
    stop: list[str] | None = field(
        default=None, metadata={"help": "Extra stop strings besides the template's."}
    )
    endings: str = field(
        default=DEFAULT_ENDINGS,
        metadata={
            "help": "Where responses end: 'paper' (r1 stops after </answer>; qwen_math and no: only the model's "
            "EOS or the budget) or 'chat_end' (also <|im_end|> for qwen_math)."
        },
    )
    merge: list[str] | None = field(
        default=None,
        metadata={"help": "Merge these summary.json files into one table instead of evaluating."},
    )
    output: str | None = field(
        default=None, metadata={"help": "With --merge: write the table here (else print)."}
    )

    def to_kwargs(self) -> dict:
        """Keyword arguments of ``evaluate``."""
        kwargs = asdict(self)
        for key in ("merge", "output"):
            kwargs.pop(key)
        return kwargs
