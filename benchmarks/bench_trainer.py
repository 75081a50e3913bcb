"""DrGRPOTrainer vs TRL's GRPOTrainer (loss_type="dr_grpo", scale_rewards="none") on the same workload.

Both train the same model on the same fixed rollouts (a ``rollout_func`` returns deterministic completions,
so sampling noise does not enter the timing), each run in its own fresh process, alternating
TRL / ours for ``--rounds`` rounds. Printed: median optimizer-step time, the ratio ours/TRL, and the peak
memory of live tensors during training (CUDA: ``max_memory_allocated``; CPU: a dispatch-mode tracker of
tensor storages, measured in a separate pass because it slows the ops).

    python benchmarks/bench_trainer.py                       # tiny CPU workload
    python benchmarks/bench_trainer.py --hidden_size 1024 --num_layers 8 --max_completion_length 1024 --bf16  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class LiveTensorPeak(TorchDispatchMode):
    """Tracks the peak number of bytes held by tensor storages created while the mode is active (plus a base)."""

    def __init__(self, base_bytes: int = 0):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = base_bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)


def _fixed_rollout_factory(max_len: int):
    def rollout(prompts, trainer):
        tok = trainer.processing_class
        rng = random.Random(len(prompts))
        completion_ids = []
        for _ in prompts:
            length = rng.randint(max_len // 4, max_len)
            ids = [rng.randrange(3, len(tok) - 3) for _ in range(length)]
            if length < max_len:
                ids[-1] = tok.eos_token_id
            completion_ids.append(ids)
        return {
            "prompt_ids": [tok(p)["input_ids"] for p in prompts],
            "completion_ids": completion_ids,
            "logprobs": None,
        }

    return rollout


def _reward(completions, **kwargs):
    return [float(len(c) % 7 < 3) for c in completions]


def run_one(which: str, opts: argparse.Namespace) -> dict:
    """Train `which` ("trl" or "ours") in this process and return its step times and peak memory."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    cuda = torch.cuda.is_available()
    common = dict(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=opts.batch_size,
        num_generations=8,
        max_completion_length=opts.max_completion_length,
        max_steps=opts.warmup + opts.steps,
        learning_rate=1e-6,
        lr_scheduler_type="constant",  # the same optimisation for both: only the trainer class differs
        adam_beta2=0.95,
        beta=0.0,
        use_cpu=not cuda,
        bf16=opts.bf16,
        gradient_checkpointing=opts.gradient_checkpointing,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    if which == "trl":
        args = GRPOConfig(loss_type="dr_grpo", scale_rewards="none", **common)
        cls = GRPOTrainer
    else:
        args = DrGRPOConfig(truncated_completion_reward=None, **common)
        cls = DrGRPOTrainer
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(64)]
    trainer = cls(
        model=opts.model_dir,
        reward_funcs=_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        rollout_func=_fixed_rollout_factory(opts.max_completion_length),
    )

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if opts.measure_memory and not cuda:
        base = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
        with LiveTensorPeak(base) as tracker:
            trainer.train()
        peak = tracker.peak
    else:
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if cuda else None
    times = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)][opts.warmup :]
    return {"which": which, "step_times": times, "peak_bytes": peak}


def _spawn(which: str, opts: argparse.Namespace, measure_memory: bool) -> dict:
    cmd = [sys.executable, __file__, "--_worker", which, "--model_dir", opts.model_dir]
    for key in ("batch_size", "max_completion_length", "steps", "warmup"):
        cmd += [f"--{key}", str(getattr(opts, key))]
    cmd += ["--bf16"] * opts.bf16 + ["--gradient_checkpointing"] * opts.gradient_checkpointing
    cmd += ["--measure_memory"] * measure_memory
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{which} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", default=None, help="Model folder; default: build a tiny one.")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_completion_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--measure_memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts._worker:
        print(json.dumps(run_one(opts._worker, opts)))
        return
    if opts.model_dir is None:
        from trl_drgrpo.demo.tiny import build_tiny_model

        opts.model_dir = build_tiny_model(
            tempfile.mkdtemp(),
            hidden_size=opts.hidden_size,
            num_layers=opts.num_layers,
            intermediate_size=4 * opts.hidden_size,
        )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(
        f"device: {device}; model: hidden {opts.hidden_size}, {opts.num_layers} layers; batch {opts.batch_size}, "
    )
    print(
        f"completions up to {opts.max_completion_length} tokens; {opts.rounds} rounds x {opts.steps} timed steps"
    )
    times = {"trl": [], "ours": []}
    for _ in range(opts.rounds):
        for which in ("trl", "ours"):
            times[which] += _spawn(which, opts, measure_memory=False)["step_times"]
    memory = {which: _spawn(which, opts, measure_memory=True)["peak_bytes"] for which in ("trl", "ours")}
    if torch.cuda.is_available():
        memory = {w: max(r["peak_bytes"] for r in [_spawn(w, opts, False)]) for w in ("trl", "ours")}
    med = {w: statistics.median(t) for w, t in times.items()}
    print(f"{'trainer':<36}{'median step (s)':>16}{'peak tensor memory (MiB)':>28}")
    names = {"trl": 'TRL GRPOTrainer (dr_grpo, "none")', "ours": "trl_drgrpo DrGRPOTrainer"}
    for w in ("trl", "ours"):
        print(f"{names[w]:<36}{med[w]:>16.4f}{memory[w] / 2**20:>28.2f}")
    print(f"step-time ratio ours/TRL: {med['ours'] / med['trl']:.3f} (goal <= 1.05)")
    print(f"peak-memory ratio ours/TRL: {memory['ours'] / memory['trl']:.4f} (goal within 2%)")


if __name__ == "__main__":
    main()
