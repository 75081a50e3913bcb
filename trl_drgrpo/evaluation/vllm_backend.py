"""vLLM offline generation, data parallel over worker processes that each own a GPU group."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from .generation import Generation, check_sampling, split_special_stops

logger = logging.getLogger(__name__)


class VLLMBackend:
    """vLLM offline generation with prefix caching; data parallel by sharding prompts over
    ``data_parallel_size`` worker processes, each owning ``tensor_parallel_size`` GPUs.

    Pass ``llm`` to reuse an existing ``vllm.LLM`` (e.g. a GRPO trainer's colocated engine).
    """

    per_prompt_seeds = True  # ``generate`` takes one seed per prompt (``evaluate``'s per-problem seeds)

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
        revision: str | None = None,
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
            revision=revision,
            tokenizer_revision=revision,
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
        seed: int | Sequence[int],
    ) -> list[list[Generation]]:
        """Generate ``n`` samples per prompt with vLLM (greedy when temperature is 0); ``seed``: one for all
        prompts, or one per prompt (each request then samples from its own seeded generator)."""
        check_sampling(n, temperature, top_p, max_tokens)
        stop_ids, stop = split_special_stops(self._tokenizer(), stop)
        params = dict(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=list(stop),
            stop_token_ids=stop_ids,
            seed=seed if isinstance(seed, int) else list(seed),
        )
        if not self._workers:
            return _vllm_generate(self.llm, list(prompts), params, self.show_progress)
        shards = [list(prompts[r :: len(self._workers)]) for r in range(len(self._workers))]
        seeds = params["seed"]
        for rank, (worker, shard) in enumerate(zip(self._workers, shards, strict=True)):
            shard_seeds = seeds if isinstance(seeds, int) else seeds[rank :: len(shards)]
            worker.submit(shard, {**params, "seed": shard_seeds})
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

            self._hf_tokenizer = AutoTokenizer.from_pretrained(
                self.engine_kwargs["model"], revision=self.engine_kwargs["revision"]
            )
        return self._hf_tokenizer

    def close(self) -> None:
        """Stop the data-parallel worker processes."""
        for worker in self._workers:
            worker.close()
        self._workers = []


def _vllm_generate(llm: Any, prompts: list[str], params: dict, show_progress: bool) -> list[list[Generation]]:
    from vllm import SamplingParams

    def sampling_params(seed: int) -> Any:
        return SamplingParams(
            n=params["n"],
            temperature=params["temperature"],
            top_p=params["top_p"],
            max_tokens=params["max_tokens"],
            stop=params["stop"] or None,
            stop_token_ids=params.get("stop_token_ids") or None,
            include_stop_str_in_output=True,
            seed=seed,
        )

    seed = params["seed"]
    sampling = sampling_params(seed) if isinstance(seed, int) else [sampling_params(s) for s in seed]
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
