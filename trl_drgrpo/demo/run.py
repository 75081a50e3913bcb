"""End-to-end Dr. GRPO demo on CPU (``make demo``): a few minutes on 2 cores, no network.

1. build a tiny Qwen2 model and pretrain it on synthetic arithmetic worked examples, some with slips
   (``trl_drgrpo.demo.pretrain``); the base model is kept in ``OUTPUT_DIR/base`` and reused next time;
2. write the RL training problems as a ``save_to_disk`` folder, hold out disjoint test problems;
3. evaluate the base model on the held-out problems (greedy, and one sample at temperature 1);
4. train with Dr. GRPO and the real math reward by running ``recipes/train.py`` with
   ``recipes/demo/tiny_drgrpo.yaml`` in a subprocess (``python`` or ``accelerate launch``);
5. evaluate the trained model, plot reward and response lengths from ``trainer_state.json``,
   print before/after accuracy and start/end reward, write ``OUTPUT_DIR/summary.json``.

    python recipes/demo.py [--output_dir outputs/demo] [--rebuild] [--max_steps 30] [-- extra train.py args]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "recipes" / "demo" / "tiny_drgrpo.yaml"
# The synthetic task of the demo: single-digit operands (255 distinct problems), 64 held out.
TASK = {"max_operand": 9, "max_mul_operand": 9}
N_TEST = 64
# Held-out evaluation budget: the recipes' max_completion_length (a response is cut where training cuts it).
EVAL_MAX_TOKENS = 48


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument(
        "--rebuild", action="store_true", help="pretrain the base model again even if it exists"
    )
    parser.add_argument("--pretrain_steps", type=int, default=None, help="override PretrainArguments.steps")
    parser.add_argument("--max_steps", type=int, default=None, help="override the recipe's RL steps")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the base model's pretraining, the RL run and the sampled evaluation (the sweep varies it)",
    )
    parser.add_argument("--launcher", choices=("python", "accelerate"), default="python")
    parser.add_argument("--accelerate_config", default=str(REPO / "accelerate_configs" / "cpu.yaml"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is fastest on a small shared CPU (spinning OpenMP threads collapse under load)",
    )
    return parser.parse_known_args(argv)


def demo_pretrain_arguments():
    """The base model: 4 layers x 96, 1000 steps on fact drills (50%) and length-varying worked solutions.

    The solutions leave the answer out of ``\\boxed{}`` 60% of the time and slip (``answer + 1``) 30% of
    the time; a right answer may carry a worked check, a slip may ramble (``synthetic.varied_solution``).
    So the base model knows the facts but greedily answers unboxed (greedy accuracy ~0) and samples a
    boxed right answer now and then (~15%): a large, robust margin for RL to win, as R1-Zero runs first
    learn the format. The bias lab uses the same base model. One torch thread: the same numbers under
    any load.
    """
    from .pretrain import PretrainArguments

    return PretrainArguments(
        hidden_size=96,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=192,
        num_examples=20000,
        template="no",
        error_rate=0.3,
        error_offset=1,
        unboxed_rate=0.6,
        drill_fraction=0.5,
        drill_size=8,
        steps_rate=0.5,
        ramble_rate=0.8,
        ramble_continue=0.3,
        steps=1000,
        batch_size=32,
        learning_rate=2e-3,
        warmup_steps=10,
        log_every=100,
        num_threads=1,
        **TASK,
    )


@torch.no_grad()
def evaluate_synthetic(
    model_dir: str,
    problems,
    template: str = "no",
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    endings: str = "paper",
) -> dict:
    """Accuracy (and boxed rate, mean length) of ``model_dir`` on ``problems`` with the math grader.

    Responses end where the template says (``Template.endings``), as in training and evaluation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..evaluation.backends import truncate_at_stop
    from ..rewards.grader import grade
    from ..templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = [get_template(template).format(p) for p in problems["problem"]]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
        if temperature > 0
        else {"do_sample": False}
    )
    ends = get_template(template).endings(endings)
    extra_eos = tokenizer.convert_tokens_to_ids(ends.eos_tokens(tokenizer.get_vocab()))
    # Without extra stop tokens the model's own EOS: passing eos_token_id=None would switch stopping off.
    if extra_eos:
        sampling["eos_token_id"] = [tokenizer.eos_token_id, *extra_eos]
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
    )
    completion_ids = out[:, inputs["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    texts = [truncate_at_stop(text, ends.stop_strings)[0] for text in texts]
    lengths = [int((ids != tokenizer.pad_token_id).sum()) + 1 for ids in completion_ids]
    scores = [grade(text, gold, template) for text, gold in zip(texts, list(problems["answer"]), strict=True)]
    return {
        "accuracy": sum(scores) / len(scores),
        "boxed_rate": sum("\\boxed" in t for t in texts) / len(texts),
        "mean_length": sum(lengths) / len(lengths),
        "examples": [
            {"problem": p, "answer": a, "response": t}
            for p, a, t in zip(
                list(problems["problem"])[:4], list(problems["answer"])[:4], texts[:4], strict=True
            )
        ],
    }


def evaluate_both(model_dir: str, problems, seed: int = 0) -> dict:
    """Greedy accuracy and accuracy of one sample at temperature 1 without top-k (as the RL rollouts)."""
    return {
        "greedy": evaluate_synthetic(model_dir, problems, max_new_tokens=EVAL_MAX_TOKENS),
        "sampled": evaluate_synthetic(
            model_dir, problems, max_new_tokens=EVAL_MAX_TOKENS, temperature=1.0, seed=seed
        ),
    }


def base_is_current(base: Path, settings) -> bool:
    """Whether ``base`` holds a model pretrained with exactly ``settings`` (else it is pretrained again)."""
    log = base / "pretrain_log.json"
    if not (base / "config.json").is_file() or not log.is_file():
        return False
    from dataclasses import asdict, fields

    logged = json.loads(log.read_text()).get("args") or {}
    # a field added later, at its default, is what an older base was trained with
    logged = {**{f.name: f.default for f in fields(settings) if f.name not in logged}, **logged}
    return logged == json.loads(json.dumps(asdict(settings)))


def train_command(
    args: argparse.Namespace, base: Path, train_data: Path, run_dir: Path, extra: list[str]
) -> list[str]:
    """The ``recipes/train.py`` command line (with ``accelerate launch`` when asked)."""
    script = [str(REPO / "recipes" / "train.py"), "--config", args.recipe, "--model_name_or_path", str(base)]
    script += ["--dataset_name", str(train_data), "--output_dir", str(run_dir), "--seed", str(args.seed)]
    if args.max_steps is not None:
        script += ["--max_steps", str(args.max_steps), "--save_steps", str(args.max_steps)]
    script += extra
    if args.launcher == "accelerate":
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", args.accelerate_config]
        return [*launch, "--num_cpu_threads_per_process", str(args.threads), *script]
    return [sys.executable, *script]


def reward_start_end(log_history: list[dict], window: int = 10) -> tuple[float, float]:
    """Mean reward over the first and the last ``window`` logged steps."""
    rewards = [e["reward"] for e in log_history if "reward" in e]
    if not rewards:
        raise RuntimeError("the training log has no 'reward' entries")
    w = max(1, min(window, len(rewards) // 2))
    return sum(rewards[:w]) / w, sum(rewards[-w:]) / w


def main(argv: list[str] | None = None) -> dict:
    args, extra = parse_args(argv)
    extra = [a for a in extra if a != "--"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    from .plots import load_log_history, plot_training_curves
    from .pretrain import pretrain
    from .synthetic import train_test_split_problems

    start = time.time()
    out = Path(args.output_dir).resolve()
    base, train_data, run_dir = out / "base", out / "train_data", out / "drgrpo"
    timings = {}

    settings = replace(demo_pretrain_arguments(), seed=args.seed)
    if args.pretrain_steps is not None:
        settings = replace(settings, steps=args.pretrain_steps)
    if args.rebuild or not base_is_current(base, settings):
        shutil.rmtree(base, ignore_errors=True)
        print(f"[demo] pretraining the base model into {base}", flush=True)
        pretrain(base, settings)
    else:
        print(f"[demo] reusing the base model in {base} (--rebuild to pretrain again)", flush=True)
    timings["pretrain_s"] = time.time() - start

    train, test = train_test_split_problems(N_TEST, seed=0, **TASK)
    shutil.rmtree(train_data, ignore_errors=True)
    train.save_to_disk(str(train_data))
    print(f"[demo] {len(train)} training problems in {train_data}, {len(test)} held out", flush=True)

    t = time.time()
    before = evaluate_both(str(base), test, seed=args.seed)
    timings["eval_before_s"] = time.time() - t
    print(
        f"[demo] before RL: greedy accuracy {before['greedy']['accuracy']:.3f}, sampled {before['sampled']['accuracy']:.3f}",
        flush=True,
    )

    shutil.rmtree(run_dir, ignore_errors=True)  # train.py would otherwise resume from an old checkpoint
    cmd = train_command(args, base, train_data, run_dir, extra)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    print("[demo] training:", " ".join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    timings["train_s"] = time.time() - t

    t = time.time()
    after = evaluate_both(str(run_dir), test, seed=args.seed)
    timings["eval_after_s"] = time.time() - t
    history = load_log_history(run_dir)
    reward_start, reward_end = reward_start_end(history)
    png = plot_training_curves(
        history, out / "training_curves.png", title="Dr. GRPO on the tiny arithmetic demo"
    )
    timings["total_s"] = time.time() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    timings["cpu_s"] = sum(u.ru_utime + u.ru_stime for u in usage)  # idle-equivalent cost, whatever the load

    summary = {
        "seed": args.seed,
        "before": before,
        "after": after,
        "reward_start": reward_start,
        "reward_end": reward_end,
        "steps": max((e.get("step", 0) for e in history), default=0),
        "plot": png,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n[demo] ======== results (held-out problems: {len(test)}) ========")
    for mode in ("greedy", "sampled"):
        print(
            f"[demo] {mode:7s} accuracy: before {before[mode]['accuracy']:.3f} -> after {after[mode]['accuracy']:.3f}"
        )
    print(f"[demo] mean training reward: first steps {reward_start:.3f} -> last steps {reward_end:.3f}")
    print(
        f"[demo] curves: {png}; summary: {out / 'summary.json'}; total {timings['total_s']:.0f}s wall, {timings['cpu_s']:.0f}s CPU"
    )
    return summary


if __name__ == "__main__":
    main()
