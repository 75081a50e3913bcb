"""DrGRPOTrainer vs TRL's GRPOTrainer (loss_type="dr_grpo", scale_rewards="none") on the same workload.

Both train the same model on the same fixed rollouts (a ``rollout_func`` returns deterministic completions shaped
like the paper's early, mid or late training, see ``PROFILES``; no sampling, so generation costs almost nothing
and the step time is the training phase), each run in its own fresh process, alternating TRL / ours for
``--rounds`` rounds. Printed: median optimizer-step time, the ratio ours/TRL, the peak memory of live tensors
during training (CUDA: ``max_memory_allocated``; CPU: a dispatch-mode tracker of tensor storages, measured in a
separate pass because it slows the ops) and DrGRPOTrainer's ``drgrpo/trained_token_fraction``.

    python benchmarks/bench_trainer.py                         # mid-training profile, tiny CPU model
    python benchmarks/bench_trainer.py --profile early         # or late, or uniform (the original workload)
    python benchmarks/bench_trainer.py --hidden_size 1024 --num_layers 8 --max_completion_length 3000 --bf16  # GPU
"""

from __future__ import annotations

import argparse
import json
import math
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


#: Rollout shapes of Dr. GRPO training, as fractions of the generation budget (the paper: 3000 tokens, Qwen2.5-Math-1.5B,
#: MATH level 3-5, G=8). Assumed from the paper's Figure 1 (right) and Figure 5, which plot output length and training
#: reward over training: Dr. GRPO's mean response stays a few hundred tokens (about a fifth of the budget) while the
#: training reward rises from about 0.3 to 0.6+, so groups all wrong (early) give way to groups all right (late);
#: the share of groups with no reward spread (TRL's ``frac_reward_zero_std``) is taken as 1/3 to 1/2+, as the issue
#: reports for math RL. These are assumptions, not read off logs: replace them with a run's
#: ``completions/mean_length``, ``completions/clipped_ratio`` and ``frac_reward_zero_std`` when one is at hand.
PROFILES = {
    #            median length / budget, log-normal sigma, truncated share, zero-spread group share
    "early": {"median": 0.25, "sigma": 0.6, "truncated": 0.04, "flat_groups": 0.35},
    "mid": {"median": 0.20, "sigma": 0.6, "truncated": 0.02, "flat_groups": 0.45},
    "late": {"median": 0.18, "sigma": 0.5, "truncated": 0.01, "flat_groups": 0.55},
}
GROUP = 8
CORRECT, WRONG = 5, 6  # a completion's first token says whether it is right (read by `_reward`)


def _profile_rollout(profile: str | None, max_len: int):
    """Fixed rollouts, a function of (profile, optimizer step, prompts) only: the same for both trainers.

    ``profile=None`` is the original uniform workload (lengths uniform in [budget/4, budget], same every step).
    """

    def rollout(prompts, trainer):
        tok = trainer.processing_class
        if profile is None:
            rng = random.Random(len(prompts))
            completion_ids = []
            for _ in prompts:
                length = rng.randint(max_len // 4, max_len)
                ids = [rng.randrange(3, len(tok) - 3) for _ in range(length)]
                ids[0] = CORRECT if length % 7 < 3 else WRONG
                if length < max_len:
                    ids[-1] = tok.eos_token_id
                completion_ids.append(ids)
            prompt_ids = [tok(p)["input_ids"] for p in prompts]
            return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}
        shape = PROFILES[profile]
        rng = random.Random(f"{profile}-{trainer.state.global_step}-{prompts[0]}")
        completion_ids = []
        for start in range(0, len(prompts), GROUP):
            flat = rng.random() < shape["flat_groups"]
            right = rng.random() < 0.5 if flat else None
            for j in range(min(GROUP, len(prompts) - start)):
                correct = right if flat else j % 2 == 0  # a spread group: half right
                if rng.random() < shape["truncated"]:
                    length = max_len
                else:
                    length = round(shape["median"] * max_len * math.exp(rng.gauss(0.0, shape["sigma"])))
                    length = min(max(length, 8), max_len - 1)
                ids = [CORRECT if correct else WRONG] + [
                    rng.randrange(10, len(tok) - 3) for _ in range(length - 1)
                ]
                if length < max_len:
                    ids[-1] = tok.eos_token_id
                completion_ids.append(ids)
        # Prompts of a few percent of the budget, of varied lengths (left-padded by TRL).
        prompt_ids = []
        for p in prompts:
            ids = tok(p)["input_ids"]
            extra = rng.randint(0, max(1, max_len // 12))
            prompt_ids.append([rng.randrange(10, len(tok) - 3) for _ in range(extra)] + ids)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def _reward(completions, completion_ids, **kwargs):
    return [float(ids[0] == CORRECT) if ids else 0.0 for ids in completion_ids]


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
        gradient_accumulation_steps=opts.accumulation,
        steps_per_generation=opts.accumulation
        * opts.rollout_steps,  # > accumulation: TRL computes old log-probs
        num_generations=GROUP,
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
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(256)]
    trainer = cls(
        model=opts.model_dir,
        reward_funcs=_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        rollout_func=_profile_rollout(opts.profile, opts.max_completion_length),
    )

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    fractions: list[float] = []  # drgrpo/trained_token_fraction of each logged step

    class Fractions(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **k):
            if logs and "drgrpo/trained_token_fraction" in logs:
                fractions.append(logs["drgrpo/trained_token_fraction"])

    trainer.add_callback(Fractions())
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
    return {"which": which, "step_times": times, "peak_bytes": peak, "trained_fraction": fractions}


def _spawn(which: str, opts: argparse.Namespace, measure_memory: bool) -> dict:
    cmd = [sys.executable, __file__, "--_worker", which, "--model_dir", opts.model_dir]
    for key in ("batch_size", "accumulation", "rollout_steps", "max_completion_length", "steps", "warmup"):
        cmd += [f"--{key}", str(getattr(opts, key))]
    cmd += ["--bf16"] * opts.bf16 + ["--gradient_checkpointing"] * opts.gradient_checkpointing
    cmd += ["--measure_memory"] * measure_memory + ["--profile", opts.profile or "uniform"]
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
    parser.add_argument(
        "--profile",
        default="mid",
        choices=["uniform", *PROFILES],
        help="Rollout shape: the paper's early/mid/late training (see PROFILES) or the original uniform lengths.",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="per_device_train_batch_size")
    parser.add_argument("--accumulation", type=int, default=4, help="gradient_accumulation_steps")
    parser.add_argument("--max_completion_length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--rollout_steps",
        type=int,
        default=1,
        help="Optimizer steps per rollout (the recipes: 8). Above 1, TRL computes old_per_token_logps at "
        "generation time; compare the mean step time then (a rollout's first step carries that forward).",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--measure_memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.profile == "uniform":
        opts.profile = None

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
        f"device: {device}; model: hidden {opts.hidden_size}, {opts.num_layers} layers; profile "
        f"{opts.profile or 'uniform'}; {opts.batch_size} x {opts.accumulation} responses per step, "
        f"completions up to {opts.max_completion_length} tokens; {opts.rounds} rounds x {opts.steps} timed steps; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    times = {"trl": [], "ours": []}
    fractions: list[float] = []
    for _ in range(opts.rounds):  # alternate, each run in a fresh process
        for which in ("trl", "ours"):
            result = _spawn(which, opts, measure_memory=False)
            times[which] += result["step_times"]
            fractions += result["trained_fraction"] if which == "ours" else []
    if torch.cuda.is_available():
        memory = {w: _spawn(w, opts, False)["peak_bytes"] for w in ("trl", "ours")}
    else:
        memory = {w: _spawn(w, opts, measure_memory=True)["peak_bytes"] for w in ("trl", "ours")}
    med = {w: statistics.median(t) for w, t in times.items()}
    mean = {w: statistics.mean(t) for w, t in times.items()}
    print(f"{'trainer':<36}{'median step (s)':>16}{'peak tensor memory (MiB)':>28}")
    names = {"trl": 'TRL GRPOTrainer (dr_grpo, "none")', "ours": "trl_drgrpo DrGRPOTrainer"}
    for w in ("trl", "ours"):
        print(f"{names[w]:<36}{med[w]:>16.4f}{memory[w] / 2**20:>28.2f}")
    if fractions:
        print(f"drgrpo/trained_token_fraction: mean {statistics.mean(fractions):.3f}")
    print(f"step-time ratio ours/TRL: {med['ours'] / med['trl']:.3f} (goal on the mid profile: <= 0.6)")
    print(
        f"mean step time ours / TRL: {mean['ours']:.4f} / {mean['trl']:.4f} s = {mean['ours'] / mean['trl']:.3f}"
    )
    print(f"peak-memory ratio ours/TRL: {memory['ours'] / memory['trl']:.4f} (goal: <= 1)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
