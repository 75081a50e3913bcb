"""The bias lab (``make bias-lab``): the paper's 2x2 ablation of GRPO's two biases on a laptop.

Arms: GRPO (length and std normalization), length-norm only, std-norm only, Dr. GRPO (neither); each a
``recipes/train.py`` run (``lab_train``: the same run, plus ``rollouts.jsonl``, every rollout's responses and
advantages) of the variant's recipe with the real ``DrGRPOTrainer`` and ``MathReward``. The default variant,
``decision`` (``lab_variants``), isolates the stop/continue decision after a visible wrong answer and runs
the pre-registered test (``recipes/lab/bias_lab_decision.yaml``): GRPO and Dr. GRPO for ``--seeds`` (0-7), the
single-bias arms for ``--side_seeds`` (0, 1). Then every run is evaluated greedily on the held-out problems
and ``report.md`` / ``lab_summary.json`` / ``plots/`` are written (``lab_report``, ``lab_mechanism``).

    python -m trl_drgrpo.demo.lab [--variant decision|v1|persistent] [--output_dir outputs/bias-lab]
                                  [--seeds 0,...,7] [--side_seeds 0,1] [--arms grpo,drgrpo]
                                  [--max_steps N] [--jobs 2] [-- extra train.py args]
    python -m trl_drgrpo.demo.lab --alphas 0,0.25,0.5,1 --seeds ...   # dose-response (make bias-lab-dose)

``--alphas`` replaces the four arms by graded length terms (``length_weight_exponent``, std normalization off),
one arm ``alpha<a>`` per value, each run for ``--seeds``; ``lab_dose`` then reads the pre-registered analysis.

Finished runs (a ``done.json`` in their folder) are kept, so an interrupted lab continues where it stopped.
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

from .lab_variants import DEFAULT_SEEDS, VARIANTS, variant_settings

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "recipes" / "lab" / "bias_lab.yaml"
# arm -> (length_normalization, std_normalization)
ARMS = {
    "grpo": (True, True),
    "length_only": (True, False),
    "std_only": (False, True),
    "drgrpo": (False, False),
}
LABELS = {
    "grpo": "GRPO",
    "length_only": "length-norm only",
    "std_only": "std-norm only",
    "drgrpo": "Dr. GRPO",
}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="outputs/bias-lab")
    parser.add_argument("--recipe", default=None, help="the arms' recipe (default: the variant's)")
    parser.add_argument(
        "--variant",
        default="decision",
        choices=VARIANTS,
        help="task and base model (trl_drgrpo/demo/lab_variants.py): decision (pre-registered), v1, persistent",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated RL seeds of GRPO and Dr. GRPO (default: the variant's; decision: 0-7)",
    )
    parser.add_argument(
        "--side_seeds",
        default=None,
        help="seeds of the single-bias arms length_only / std_only (default: the variant's; decision: 0,1)",
    )
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument(
        "--alphas",
        default=None,
        help="comma-separated length_weight_exponent values in [0, 1]: one arm each (std off) instead of --arms",
    )
    parser.add_argument(
        "--slip_rate",
        type=float,
        default=None,
        help="inject slips (gold + 1) into this share of each rollout's responses (lab_slips; default: none)",
    )
    parser.add_argument("--max_steps", type=int, default=None, help="override the recipe's RL steps")
    parser.add_argument("--pretrain_steps", type=int, default=None, help="override the base model's steps")
    parser.add_argument("--rebuild", action="store_true", help="pretrain the base model and rerun every arm")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--window", type=int, default=10, help="logged steps averaged for start/end values")
    args, extra = parser.parse_known_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        parser.error(f"--arms: unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
    if args.variant not in DEFAULT_SEEDS:
        parser.error(f"--variant: unknown {args.variant!r}")
    seeds, side = DEFAULT_SEEDS[args.variant]
    args.seeds = seeds if args.seeds is None else args.seeds
    args.side_seeds = (
        (side if args.seeds == seeds else args.seeds) if args.side_seeds is None else args.side_seeds
    )
    for name in ("seeds", "side_seeds"):
        try:
            values = [int(s) for s in getattr(args, name).split(",") if s.strip()]
        except ValueError:
            parser.error(f"--{name} must be comma-separated integers, got {getattr(args, name)!r}")
        if not values:
            parser.error(f"--{name}: give at least one seed")
        setattr(args, "seed_list" if name == "seeds" else "side_seed_list", values)
    if args.slip_rate is not None and not 0.0 <= args.slip_rate <= 1.0:
        parser.error(f"--slip_rate must be in [0, 1], got {args.slip_rate}")
    if args.jobs < 1 or args.window < 1:
        parser.error("--jobs and --window must be >= 1")
    args.arm_list = arms
    if args.alphas is not None:
        try:
            alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
        except ValueError:
            parser.error(f"--alphas must be comma-separated numbers in [0, 1], got {args.alphas!r}")
        if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
            parser.error(f"--alphas must be comma-separated numbers in [0, 1], got {args.alphas!r}")
        args.arm_list = [alpha_arm(a) for a in alphas]
    if args.recipe is None:
        args.recipe = str(REPO / variant_settings(args.variant)[2])
    return args, [a for a in extra if a != "--"]


def alpha_arm(alpha: float) -> str:
    """The arm name of a graded length term (``alpha0.25``); ``arm_alpha`` reads it back."""
    return f"alpha{alpha:g}"


def arm_alpha(arm: str) -> float | None:
    """The ``length_weight_exponent`` of an ``alpha<a>`` arm, None for the four switch arms."""
    return float(arm[len("alpha") :]) if arm.startswith("alpha") else None


def arm_label(arm: str) -> str:
    alpha = arm_alpha(arm)
    return LABELS[arm] if alpha is None else f"alpha = {alpha:g}"


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


def arm_command(
    args: argparse.Namespace, arm: str, seed: int, base: Path, data: Path, run_dir: Path, extra: list[str]
) -> list[str]:
    """The training command of one arm and seed (``recipes/train.py`` plus rollout records: ``lab_train``)."""
    cmd = [sys.executable, "-m", "trl_drgrpo.demo.lab_train", "--config", args.recipe]
    cmd += ["--model_name_or_path", str(base), "--dataset_name", str(data), "--output_dir", str(run_dir)]
    alpha = arm_alpha(arm)
    if alpha is None:
        length_norm, std_norm = ARMS[arm]
        cmd += ["--length_normalization", _bool(length_norm), "--std_normalization", _bool(std_norm)]
    else:  # alpha decides length_normalization (1: true, else false; the recipe's value is false)
        cmd += ["--length_weight_exponent", f"{alpha:g}", "--std_normalization", "false"]
    cmd += ["--seed", str(seed), "--run_name", f"{arm}-seed{seed}"]
    if args.max_steps is not None:
        cmd += ["--max_steps", str(args.max_steps), "--save_steps", str(args.max_steps)]
    if args.slip_rate is not None:
        cmd += ["--slip_rate", f"{args.slip_rate:g}"]
    return cmd + extra


def arm_seeds(args: argparse.Namespace, arm: str) -> list[int]:
    """The seeds an arm runs: ``--seeds`` for GRPO and Dr. GRPO, ``--side_seeds`` for the single-bias arms."""
    return args.seed_list if arm in ("grpo", "drgrpo") or arm_alpha(arm) is not None else args.side_seed_list


def _run_all(jobs: list[tuple[str, list[str], Path]], parallel: int) -> None:
    """Run the commands, ``parallel`` at a time; each logs to ``<run_dir>/train.log``; fail on the first error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd, run_dir = pending.pop(0)
            shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished run would resume: start clean
            run_dir.mkdir(parents=True)
            log = open(run_dir / "train.log", "w")  # noqa: SIM115 - closed when the process ends
            print(f"[lab] start {name}", flush=True)
            running.append(
                (
                    name,
                    subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
                    log,
                    run_dir,
                    time.time(),
                )
            )
        name, proc, log, run_dir, started = running[0]
        for item in running:  # wait for whichever finishes first
            if item[1].poll() is not None:
                name, proc, log, run_dir, started = item
                break
        else:
            time.sleep(0.5)  # polling only paces the loop; no result depends on it
            continue
        running.remove((name, proc, log, run_dir, started))
        log.close()
        if proc.returncode != 0:
            for other in running:
                other[1].terminate()
            tail = (run_dir / "train.log").read_text()[-3000:]
            raise SystemExit(
                f"[lab] {name} failed (exit {proc.returncode}); end of {run_dir / 'train.log'}:\n{tail}"
            )
        (run_dir / "done.json").write_text(json.dumps({"wall_s": round(time.time() - started, 1)}) + "\n")
        print(f"[lab] done {name} ({time.time() - started:.0f}s)", flush=True)


def main(argv: list[str] | None = None) -> dict:
    args, extra = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)
    from .lab_report import build_report, load_mechanism, write_report
    from .plots import load_log_history
    from .pretrain import pretrain, weights_digest
    from .run import (
        EVAL_MAX_TOKENS,
        N_TEST,
        base_is_current,
        evaluate_synthetic,
    )
    from .synthetic import train_test_split_problems

    start = time.time()
    out = Path(args.output_dir).resolve()
    base, data = out / "base", out / "train_data"
    settings, task, _ = variant_settings(args.variant)
    if args.pretrain_steps is not None:
        settings = replace(settings, steps=args.pretrain_steps)
    if args.rebuild or not base_is_current(base, settings):
        shutil.rmtree(base, ignore_errors=True)
        print(f"[lab] pretraining the base model into {base}", flush=True)
        pretrain(base, settings)
    train, test = train_test_split_problems(N_TEST, seed=0, **task)
    shutil.rmtree(data, ignore_errors=True)
    train.save_to_disk(str(data))

    run_dirs = {
        arm: {str(s): out / "runs" / arm / f"seed{s}" for s in arm_seeds(args, arm)} for arm in args.arm_list
    }
    jobs = [
        (f"{arm} seed {seed}", arm_command(args, arm, int(seed), base, data, run_dir, extra), run_dir)
        for arm, seeds in run_dirs.items()
        for seed, run_dir in seeds.items()
        if args.rebuild or not (run_dir / "done.json").is_file()
    ]
    t = time.time()
    _run_all(jobs, args.jobs)
    train_s = time.time() - t

    def accuracy(model_dir: Path) -> float:
        path = model_dir / "heldout_eval.json"
        if not path.is_file():
            result = evaluate_synthetic(str(model_dir), test, max_new_tokens=EVAL_MAX_TOKENS)
            path.write_text(json.dumps({k: v for k, v in result.items()}, indent=2) + "\n")
        return json.loads(path.read_text())["accuracy"]

    base_accuracy = accuracy(base)
    accuracies = {arm: {seed: accuracy(d) for seed, d in seeds.items()} for arm, seeds in run_dirs.items()}
    histories = {
        arm: {seed: load_log_history(d) for seed, d in seeds.items()} for arm, seeds in run_dirs.items()
    }
    mechanisms = {
        arm: {seed: load_mechanism(d) for seed, d in seeds.items()} for arm, seeds in run_dirs.items()
    }
    labels = {arm: arm_label(arm) for arm in run_dirs}
    report = build_report(
        histories,
        accuracies,
        labels=labels,
        window=args.window,
        base_accuracy=base_accuracy,
        mechanisms=mechanisms,
        variant=args.variant,
    )
    report["base_weights_sha256"] = weights_digest(base)
    report["markdown"] += (
        f"\nBase model weights (SHA-256 of the tensors): `{report['base_weights_sha256']}`.\n"
    )
    data_out = write_report(out, run_dirs, report, labels=labels, mechanisms=mechanisms)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings = {
        "total_wall_s": round(time.time() - start, 1),
        "train_wall_s": round(train_s, 1),
        "runs_trained": len(jobs),
        "children_cpu_s": round(children.ru_utime + children.ru_stime, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(report["markdown"])
    print(f"[lab] report: {out / 'report.md'}; timings {timings}")
    return {**data_out, "timings": timings}


if __name__ == "__main__":
    main(sys.argv[1:])
