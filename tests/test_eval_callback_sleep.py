"""The in-training evaluation on a sleeping colocated vLLM engine (every paper recipe sets vllm_enable_sleep_mode).

vLLM's sleep mode runs on GPUs only (CUDA, ROCm, XPU; not its CPU build), so a stand-in plays the engine: it
records every call in order and enforces what the real one needs. After ``sleep(level=2)`` the weights and the KV
cache are gone: generating before both are back fails, and waking the weights brings back the *level-2 placeholder*
weights, so only a weight push (TRL's ``sync_weights``: wake the weights, load the trained ones) makes generation
use the policy. The stand-in's ``sync_weights`` follows TRL 1.16's ``VLLMGeneration.sync_weights``.
"""

from __future__ import annotations

import sys
import types

import pytest

from trl_drgrpo.evaluation.callback import EvaluationCallback


class SleepingLLM:
    """Stands in for a ``vllm.LLM`` built with ``enable_sleep_mode=True``; ``calls`` is the call log."""

    def __init__(self, calls: list):
        self.calls = calls
        self.weights = self.kv_cache = (
            "asleep"  # TRL puts the engine to sleep (level 2) right after building it
        )

    def get_tokenizer(self):
        return types.SimpleNamespace(get_added_vocab=lambda: {})

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags or ("weights", "kv_cache"))))
        for tag in tags or ("weights", "kv_cache"):
            if getattr(self, tag) == "asleep":
                setattr(self, tag, "placeholder" if tag == "weights" else "ready")

    def load_weights(self):
        if self.weights == "asleep":
            raise RuntimeError("load_weights into unmapped memory (weights asleep)")
        self.calls.append(("load_weights",))
        self.weights = "policy"

    def sleep(self, level=1):
        self.calls.append(("sleep", level))
        self.kv_cache = "asleep"
        if level == 2:
            self.weights = "asleep"

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        if self.kv_cache != "ready" or self.weights != "policy":
            raise RuntimeError(f"generate with weights={self.weights}, kv_cache={self.kv_cache}")
        self.calls.append(("generate", len(prompts)))
        out = types.SimpleNamespace(text="\\boxed{1}", token_ids=[1], finish_reason="stop")
        return [types.SimpleNamespace(outputs=[out]) for _ in prompts]


class SleepingVLLMGeneration:
    """TRL's ``VLLMGeneration`` state for ``vllm_enable_sleep_mode=True`` (colocate)."""

    def __init__(self, calls: list):
        self.llm = SleepingLLM(calls)
        self.enable_sleep_mode, self.tensor_parallel_size = True, 1
        self._llm_weights_sleeping = True

    def sync_weights(self):
        self.llm.wake_up(tags=["weights"])
        self._llm_weights_sleeping = False
        self.llm.load_weights()


class Trainer:
    def __init__(self, calls: list, step: int, last_loaded: int | None):
        self.args = types.SimpleNamespace(use_vllm=True, vllm_mode="colocate", output_dir=None)
        self.accelerator = types.SimpleNamespace(process_index=0, num_processes=1, is_main_process=True)
        self.state = types.SimpleNamespace(global_step=step)
        self.vllm_generation = SleepingVLLMGeneration(calls)
        self._last_loaded_step = last_loaded
        self.model = types.SimpleNamespace(training=True, eval=lambda: None, train=lambda: None)

    def log(self, logs):
        pass


@pytest.fixture
def vllm_sampling_params(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", module)


@pytest.mark.parametrize(
    "last_loaded", [None, 5], ids=["weights-behind-the-policy", "weights-pushed-at-this-step-then-slept"]
)
def test_sleeping_engine_is_woken_resynced_and_put_back_to_sleep(
    tmp_path, eval_suite_path, vllm_sampling_params, last_loaded
):
    """wake the weights and push the policy, wake the KV cache, generate, sleep at level 2 -- in this order,
    whether or not the weights were already pushed at this step (level-2 sleep discarded them since)."""
    calls: list = []
    trainer = Trainer(calls, step=5, last_loaded=last_loaded)
    callback = EvaluationCallback(
        "amc", limit=2, data=str(eval_suite_path), max_tokens=4, output_dir=tmp_path
    )
    callback.bind(trainer).evaluate_now(5)
    assert calls == [
        ("wake_up", ("weights",)),
        ("load_weights",),
        ("wake_up", ("kv_cache",)),
        ("generate", 2),
        ("sleep", 2),
    ]
    vg = trainer.vllm_generation
    assert vg._llm_weights_sleeping and vg.llm.weights == "asleep"  # the next rollout re-pushes the weights
    assert trainer._last_loaded_step == 5


def test_engine_is_put_back_to_sleep_when_generation_fails(tmp_path, eval_suite_path, vllm_sampling_params):
    calls: list = []
    trainer = Trainer(calls, step=3, last_loaded=None)

    def broken(*args, **kwargs):
        calls.append(("generate-failed",))
        raise RuntimeError("boom")

    trainer.vllm_generation.llm.generate = broken
    callback = EvaluationCallback(
        "amc", limit=1, data=str(eval_suite_path), max_tokens=4, output_dir=tmp_path
    )
    with pytest.raises(RuntimeError, match="boom"):
        callback.bind(trainer).evaluate_now(3)
    assert calls[-2:] == [("generate-failed",), ("sleep", 2)]
    assert trainer.vllm_generation._llm_weights_sleeping
