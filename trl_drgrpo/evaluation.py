"""Benchmark evaluation of math reasoning models (the paper's Table 1 / Figure 1 protocol).

``evaluate`` generates answers for AIME24, AMC, MATH500, Minerva Math and OlympiadBench with
vLLM (GPU) or transformers ``generate`` (CPU or GPU), grades them with ``trl_drgrpo.grader`` and
writes, atomically and resumably, into ``output_dir``:

- ``samples.jsonl``: one line per generated sample (appended with flush + fsync);
- ``summary.json``: per-benchmark avg@n accuracy, pass@k, response lengths, format and truncation
  rates, the average over benchmarks and the full configuration;
- ``results.md``: a Markdown table in the paper's layout.

``merge_summaries`` turns several ``summary.json`` files into one table (e.g. three templates).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tqdm.auto import tqdm

from .templates import Template, get_template

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.md"
CONFIG_FILE = "config.json"
BACKENDS = ("auto", "vllm", "transformers")
CHAT_END = "<|im_end|>"


# --------------------------------------------------------------------------------------------
# Benchmarks and data
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Generation backends
# --------------------------------------------------------------------------------------------


class Generation(NamedTuple):
    """One generated sample: its text (ending with the stop string if one ended it), its length in
    tokens and whether it ended by itself (EOS or stop string) rather than by the token budget."""

    text: str
    num_tokens: int
    finished: bool


class GenerationBackend(Protocol):
    """What ``evaluate`` needs from a backend."""

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: Sequence[str],
        seed: int,
    ) -> list[list[Generation]]:
        """Return ``n`` generations for each prompt, in order."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` right after the earliest stop string (kept); return the text and whether one was found."""
    best = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best < 0 or i + len(s) < best):
            best = i + len(s)
    return (text[:best], True) if best >= 0 else (text, False)


def split_special_stops(tokenizer: Any, stop: Sequence[str]) -> tuple[list[int], list[str]]:
    """Split ``stop`` into token ids of single added/special tokens (e.g. ``<|im_end|>``) and plain strings.

    Special tokens are dropped from decoded text, so they can only end generation as token ids.
    """
    added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
    ids = [added[s] for s in stop if s in added]
    return ids, [s for s in stop if s and s not in added]


def effective_stops(template: Template, extra: Sequence[str] | None = None) -> tuple[str, ...]:
    """The template's stop strings, the chat end marker when the prompt uses one, then ``extra``.

    With the chat-style ``qwen_math`` template a base model closes its turn with ``<|im_end|>``;
    without stopping there it would start a new turn and ramble to the token budget.
    """
    stops = list(template.stop)
    if CHAT_END in template.prompt:
        stops.append(CHAT_END)
    for s in extra or ():
        if s and s not in stops:
            stops.append(s)
    return tuple(stops)


class _StopStringCriteria:
    """Stops each sequence once its generated tail contains one of the stop strings."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_length: int):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_length = prompt_length
        # A stop string of L characters spans at most L tokens (plus one partly decoded byte token).
        self.window = max((len(s) for s in self.stop), default=0) + 2

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        tails = input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window) :]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        hits = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    """Batched ``model.generate`` with left padding (CPU or GPU).

    Args:
        model: Hub id, folder or an already loaded ``PreTrainedModel``.
        tokenizer: Tokenizer (loaded from ``model`` when omitted).
        batch_size: Prompts per ``generate`` call (each yields ``n`` sequences).
        device: Where to load a model given by name (default: CUDA when available, else CPU).
        dtype: ``torch_dtype`` for loading by name.
        show_progress: Show a tqdm bar over batches.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        show_progress: bool = True,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model, (str, os.PathLike)):
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
            model = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype).to(device)
        elif tokenizer is None:
            raise ValueError("a tokenizer is required when the model is given as an object")
        self.model, self.batch_size, self.show_progress = model, batch_size, show_progress
        self.tokenizer = _left_padding_copy(tokenizer)

    def _eos_ids(self) -> list[int]:
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        return ids

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: Sequence[str],
        seed: int,
        synced_gpus: bool = False,
    ) -> list[list[Generation]]:
        """Generate ``n`` samples per prompt (greedy, computed once and repeated, when temperature is 0)."""
        import torch

        _check_sampling(n, temperature, top_p, max_tokens)
        greedy = temperature == 0
        per_prompt = 1 if greedy else n
        torch.manual_seed(seed)
        stop_ids, stop = split_special_stops(self.tokenizer, stop)
        eos_ids = self._eos_ids() + [i for i in stop_ids if i not in self._eos_ids()]
        pad_id = self.tokenizer.pad_token_id
        ended = set(eos_ids) | ({pad_id} if pad_id is not None else set())
        results: list[list[Generation]] = []
        batches = range(0, len(prompts), self.batch_size)
        for start in tqdm(batches, desc="generate", disable=not self.show_progress, leave=False):
            batch = list(prompts[start : start + self.batch_size])
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.model.device)
            prompt_length = enc["input_ids"].shape[1]
            kwargs: dict[str, Any] = dict(
                max_new_tokens=max_tokens,
                num_return_sequences=per_prompt,
                pad_token_id=pad_id,
                eos_token_id=eos_ids or None,
                do_sample=not greedy,
                synced_gpus=synced_gpus,
                # Plain decoding whatever the checkpoint's generation_config says (as vLLM with explicit params).
                repetition_penalty=1.0,
            )
            if greedy:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            else:
                kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
            if stop:
                kwargs["stopping_criteria"] = [_StopStringCriteria(self.tokenizer, stop, prompt_length)]
            with torch.no_grad():
                out = self.model.generate(**enc, **kwargs)
            completions = out[:, prompt_length:].tolist()
            for i in range(len(batch)):
                rows = completions[i * per_prompt : (i + 1) * per_prompt]
                gens = [self._to_generation(row, ended, stop) for row in rows]
                results.append(gens * n if greedy else gens)
        return results

    def _to_generation(self, ids: list[int], ended: set[int], stop: Sequence[str]) -> Generation:
        length = next((i for i, t in enumerate(ids) if t in ended), len(ids))
        text = self.tokenizer.decode(ids[:length], skip_special_tokens=True)
        text, hit = truncate_at_stop(text, stop)
        if hit:
            return Generation(text, length, True)
        if length < len(ids):  # ended by EOS, which counts as a generated token (as in vLLM)
            return Generation(text, length + 1, True)
        return Generation(text, length, False)


def _left_padding_copy(tokenizer: Any) -> Any:
    """The tokenizer with left padding and a pad token, without mutating the caller's object."""
    import copy

    if tokenizer.padding_side != "left" or tokenizer.pad_token is None:
        tokenizer = copy.copy(tokenizer)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class VLLMBackend:
    """vLLM offline generation with prefix caching; data parallel by sharding prompts over
    ``data_parallel_size`` worker processes, each owning ``tensor_parallel_size`` GPUs.

    Pass ``llm`` to reuse an existing ``vllm.LLM`` (e.g. a GRPO trainer's colocated engine).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        llm: Any = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        dtype: str = "auto",
        show_progress: bool = True,
    ):
        if llm is None and model is None:
            raise ValueError("VLLMBackend needs a model name/folder or an existing vllm.LLM")
        if tensor_parallel_size < 1 or data_parallel_size < 1:
            raise ValueError("tensor_parallel_size and data_parallel_size must be >= 1")
        self.show_progress = show_progress
        self.engine_kwargs = dict(
            model=str(model) if model is not None else None,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            enable_prefix_caching=True,
        )
        self.llm = llm
        self._hf_tokenizer: Any = None
        self._workers: list[_VLLMWorker] = []
        if llm is None and data_parallel_size > 1:
            groups = _device_groups(data_parallel_size, tensor_parallel_size)
            self._workers = [_VLLMWorker(devices, self.engine_kwargs) for devices in groups]
        elif llm is None:
            from vllm import LLM

            self.llm = LLM(**self.engine_kwargs)

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: Sequence[str],
        seed: int,
    ) -> list[list[Generation]]:
        """Generate ``n`` samples per prompt with vLLM (greedy when temperature is 0)."""
        _check_sampling(n, temperature, top_p, max_tokens)
        stop_ids, stop = split_special_stops(self._tokenizer(), stop)
        params = dict(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=list(stop),
            stop_token_ids=stop_ids,
            seed=seed,
        )
        if not self._workers:
            return _vllm_generate(self.llm, list(prompts), params, self.show_progress)
        shards = [list(prompts[r :: len(self._workers)]) for r in range(len(self._workers))]
        for worker, shard in zip(self._workers, shards, strict=True):
            worker.submit(shard, params)
        outputs = [worker.result() for worker in self._workers]
        merged: list[list[Generation]] = [[] for _ in prompts]
        for rank, out in enumerate(outputs):
            for j, gens in enumerate(out):
                merged[rank + j * len(self._workers)] = gens
        return merged

    def _tokenizer(self) -> Any:
        if self.llm is not None:
            return self.llm.get_tokenizer()
        if self._hf_tokenizer is None:
            from transformers import AutoTokenizer

            self._hf_tokenizer = AutoTokenizer.from_pretrained(self.engine_kwargs["model"])
        return self._hf_tokenizer

    def close(self) -> None:
        """Stop the data-parallel worker processes."""
        for worker in self._workers:
            worker.close()
        self._workers = []


def _vllm_generate(llm: Any, prompts: list[str], params: dict, show_progress: bool) -> list[list[Generation]]:
    from vllm import SamplingParams

    sampling = SamplingParams(
        n=params["n"],
        temperature=params["temperature"],
        top_p=params["top_p"],
        max_tokens=params["max_tokens"],
        stop=params["stop"] or None,
        stop_token_ids=params.get("stop_token_ids") or None,
        include_stop_str_in_output=True,
        seed=params["seed"],
    )
    if not prompts:
        return []
    outputs = llm.generate(prompts, sampling_params=sampling, use_tqdm=show_progress)
    return [
        [Generation(o.text, len(o.token_ids), o.finish_reason == "stop") for o in request.outputs]
        for request in outputs
    ]


def _vllm_worker_main(devices: str, engine_kwargs: dict, inbox: Any, outbox: Any) -> None:
    # Each data-parallel rank sees only its own GPUs; set before vLLM (or torch) touches CUDA.
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    from vllm import LLM

    llm = LLM(**engine_kwargs)
    while True:
        job = inbox.get()
        if job is None:
            return
        prompts, params = job
        try:
            outbox.put(("ok", _vllm_generate(llm, prompts, params, show_progress=False)))
        except Exception as err:  # report instead of hanging the parent
            outbox.put(("error", repr(err)))


def _device_groups(data_parallel_size: int, tensor_parallel_size: int) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` value of each data-parallel rank (``tensor_parallel_size`` GPUs each)."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    needed = data_parallel_size * tensor_parallel_size
    if len(devices) < needed:
        raise ValueError(
            f"data_parallel_size={data_parallel_size} x tensor_parallel_size={tensor_parallel_size} needs "
            f"{needed} GPUs; visible: {devices}"
        )
    tp = tensor_parallel_size
    return [",".join(devices[r * tp : (r + 1) * tp]) for r in range(data_parallel_size)]


class _VLLMWorker:
    """A spawned process that owns one vLLM engine (one data-parallel rank).

    Not a daemon: vLLM starts its own engine subprocesses, which daemons may not do.
    """

    def __init__(self, devices: str, engine_kwargs: dict):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.process = ctx.Process(
            target=_vllm_worker_main, args=(devices, engine_kwargs, self.inbox, self.outbox)
        )
        self.process.start()

    def submit(self, prompts: list[str], params: dict) -> None:
        self.inbox.put((prompts, params))

    def result(self) -> list[list[Generation]]:
        import queue

        while True:
            try:
                status, payload = self.outbox.get(timeout=30)
                break
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"vLLM worker exited with code {self.process.exitcode}") from None
        if status != "ok":
            raise RuntimeError(f"vLLM worker failed: {payload}")
        return [[Generation(*g) for g in gens] for gens in payload]

    def close(self) -> None:
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)


def _check_sampling(n: int, temperature: float, top_p: float, max_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")


def vllm_available() -> bool:
    """Whether vLLM can be imported and a CUDA device is present."""
    import importlib.util

    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def make_backend(
    backend: str,
    model: Any,
    *,
    tokenizer: Any = None,
    batch_size: int = 8,
    seed: int = 0,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    show_progress: bool = True,
) -> GenerationBackend:
    """Build the backend named ``backend`` (``auto``: vLLM if importable and CUDA present, else transformers)."""
    name = resolve_backend(backend)
    if name == "vllm":
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("the vllm backend needs the model as a Hub id or folder")
        return VLLMBackend(
            str(model),
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            show_progress=show_progress,
        )
    if tensor_parallel_size != 1 or data_parallel_size != 1:
        warnings.warn("tensor/data parallel sizes only apply to the vllm backend; ignored", stacklevel=2)
    return TransformersBackend(model, tokenizer, batch_size=batch_size, show_progress=show_progress)


def resolve_backend(backend: str | None) -> str:
    """``vllm`` or ``transformers`` from a user choice (``auto``/``None`` picks)."""
    name = (backend or "auto").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "vllm" if vllm_available() else "transformers"
    if name == "vllm" and not vllm_available():
        raise ValueError("backend 'vllm' needs the vllm package and a CUDA GPU; use backend='transformers'")
    return name


# --------------------------------------------------------------------------------------------
# Grading and metrics
# --------------------------------------------------------------------------------------------


class Problem(NamedTuple):
    """A problem to evaluate: benchmark name, its index in the benchmark, text and gold answer."""

    benchmark: str
    index: int
    problem: str
    gold: Any


def _json_safe(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return value


def generate_and_grade(
    backend: GenerationBackend,
    template: str | Template,
    problems: Sequence[Problem],
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 3000,
    seed: int = 0,
    stop: Sequence[str] | None = None,
) -> list[dict]:
    """Generate ``n`` responses per problem and grade them; return one record per sample."""
    from .grader import extract_answer, grade

    template = get_template(template)
    prompts = [template.format(p.problem) for p in problems]
    stops = effective_stops(template, stop)
    generations = backend.generate(prompts, n, temperature, top_p, max_tokens, stops, seed)
    if len(generations) != len(problems):
        raise RuntimeError(f"backend returned {len(generations)} results for {len(problems)} prompts")
    records = []
    for problem, prompt, gens in zip(problems, prompts, generations, strict=True):
        for k, gen in enumerate(gens):
            records.append(
                {
                    "benchmark": problem.benchmark,
                    "index": problem.index,
                    "problem": problem.problem,
                    "gold": _json_safe(problem.gold),
                    "prompt": prompt,
                    "sample": k,
                    "response": gen.text,
                    "response_tokens": int(gen.num_tokens),
                    "finished": bool(gen.finished),
                    "extracted_answer": extract_answer(gen.text, template),
                    "score": float(grade(gen.text, problem.gold, template)),
                }
            )
    return records


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate ``1 - C(n-c, k) / C(n, k)`` from ``c`` correct out of ``n`` samples."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def summarize_benchmark(records: Sequence[dict], n: int) -> dict:
    """Metrics of one benchmark from its sample records (``n`` samples per problem)."""
    by_problem: dict[int, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["index"], []).append(r)
    if not by_problem:
        raise ValueError("no samples to summarize")
    correct = [sum(1 for r in rs if r["score"] > 0) for rs in by_problem.values()]
    tokens = [r["response_tokens"] for r in records]
    summary = {
        "accuracy": sum(r["score"] for r in records) / len(records),
        **{f"pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(correct) for k in range(1, n + 1)},
        "mean_response_tokens": sum(tokens) / len(tokens),
        "max_response_tokens": max(tokens),
        "well_formed": sum(r["extracted_answer"] is not None for r in records) / len(records),
        "truncated": sum(not r["finished"] for r in records) / len(records),
        "count": len(by_problem),
        "num_samples": len(records),
    }
    return summary


def build_summary(records: Iterable[dict], benchmarks: Sequence[str], n: int, config: dict) -> dict:
    """The ``summary.json`` content: per-benchmark metrics, their average accuracy and the config."""
    grouped: dict[str, list[dict]] = {b: [] for b in benchmarks}
    for r in records:
        if r["benchmark"] in grouped:
            grouped[r["benchmark"]].append(r)
    per_benchmark = {b: summarize_benchmark(rs, n) for b, rs in grouped.items() if rs}
    accuracies = [m["accuracy"] for m in per_benchmark.values()]
    return {
        "model": config.get("model_name") or config.get("model"),
        "template": config.get("template"),
        "benchmarks": per_benchmark,
        "average": {"accuracy": sum(accuracies) / len(accuracies) if accuracies else None},
        "config": config,
    }


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def prepare_output_dir(output_dir: str | os.PathLike, config: dict, result_keys: Sequence[str]) -> list[dict]:
    """Create or resume ``output_dir``; return the complete records already there.

    Raises ``ValueError`` when ``output_dir`` is a file or holds a run whose ``result_keys`` differ.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {out} exists and is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    config_path, samples_path = out / CONFIG_FILE, out / SAMPLES_FILE
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        diff = {k: (saved.get(k), config.get(k)) for k in result_keys if saved.get(k) != config.get(k)}
        if diff:
            details = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out} holds a run with a different configuration ({details}); "
                "use another output_dir or delete that one"
            )
    elif samples_path.exists():
        raise ValueError(f"{out} has {SAMPLES_FILE} but no {CONFIG_FILE}; cannot tell how it was produced")
    records = read_samples(samples_path)
    kept = complete_records(records, config["n"])
    if samples_path.exists() and (len(kept) != len(records) or not _ends_cleanly(samples_path)):
        logger.warning("%s: dropping incomplete sample lines before resuming", out)
        atomic_write_text(samples_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
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


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

# Configuration fields that change the results: resuming with other values is refused.
RESULT_KEYS = ("model", "template", "n", "temperature", "top_p", "max_tokens", "seed", "data", "stop")


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
    model_name: str | None = None,
    max_model_len: int | None = None,
    show_progress: bool = True,
    on_chunk: Callable[[list[dict]], None] | None = None,
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
        stop: Extra stop strings on top of the template's (and ``<|im_end|>`` for chat templates).
        model_name: Name shown in the table (default: the model's folder name).
        max_model_len: vLLM context length.
        show_progress: Show progress bars.
        on_chunk: Called with the records of each saved chunk.
    """
    template = get_template(template)
    names = resolve_benchmarks(benchmarks)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    _check_sampling(n, temperature, top_p, max_tokens)
    backend_name = resolve_backend(backend) if backend is None or isinstance(backend, str) else None
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
        "stop": list(effective_stops(template, stop)),
        "batch_size": batch_size,
        "tensor_parallel_size": tensor_parallel_size,
        "data_parallel_size": data_parallel_size,
    }
    datasets_by_name = {name: load_benchmark(name, data) for name in names}
    records = prepare_output_dir(output_dir, config, RESULT_KEYS)
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
            show_progress=show_progress,
        )
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
                new = generate_and_grade(
                    gen_backend,
                    template,
                    todo[start : start + chunk],
                    n=n,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    seed=seed + start,
                    stop=stop,
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

    summary = build_summary(
        (r for r in records if (r["benchmark"], r["index"]) in selected), names, n, config
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
    benchmarks: str = field(
        default="aime,amc,math,minerva,olympiad_bench",
        metadata={"help": "Comma-separated benchmarks among aime, amc, math, minerva, olympiad_bench."},
    )
    backend: str = field(
        default="auto", metadata={"help": "vllm, transformers or auto (vllm if importable and CUDA present)."}
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
    max_model_len: int | None = field(default=None, metadata={"help": "vLLM maximum context length."})
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
