"""`make gpu-check` (scripts/gpu_check.py): its plan, its parsing and its dry run, on a machine without a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = _load()


def _step(steps, name):
    return next(s for s in steps if s.name == name)


def test_plan_covers_the_issue_and_fits_eight_minutes(tmp_path):
    argv = ["--output_dir", str(tmp_path), "--eval_data", "suite", "--num_gpus", "1"]
    steps = gpu_check.plan(gpu_check.parse_args(argv))
    assert [s.name for s in steps] == ["bench", "model", "train", "eval-vllm", "eval-transformers"]
    warm = gpu_check.plan(gpu_check.parse_args([*argv, "--cold_start_s", "0"]))
    assert sum(s.timeout_s for s in warm) <= 8 * 60  # the rest is the cold-start allowance (below)
    assert "--bf16" in _step(steps, "bench").command
    train = " ".join(_step(steps, "train").command)
    for flag in ("--use_vllm true", "--vllm_mode colocate", "--bf16 true", "--master_weights fp32", "--max_steps 3",
                 "--vllm_enable_sleep_mode true", "--eval_benchmarks math", "--eval_data suite"):  # fmt: skip
        assert flag in train
    for backend in ("vllm", "transformers"):
        command = " ".join(_step(steps, f"eval-{backend}").command)
        assert f"--backend {backend}" in command and "--limit 20" in command and "--data suite" in command


def test_every_planned_command_parses_with_the_real_parsers(tmp_path, monkeypatch):
    """The flags the plan passes exist: each command line goes through its script's own parser."""
    import transformers.training_args

    monkeypatch.setattr(
        transformers.training_args, "is_torch_bf16_gpu_available", lambda: True
    )  # as on a GPU
    from trl import TrlParser

    from trl_drgrpo.demo import pretrain
    from trl_drgrpo.evaluate import USAGE  # noqa: F401  (the evaluate CLI module imports)
    from trl_drgrpo.evaluation.run import EvaluationArguments
    from trl_drgrpo.training.arguments import parse_training_args

    steps = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--eval_data", "suite"]))
    train = _step(steps, "train").command
    script_args, training_args, model_args = parse_training_args(train[train.index("recipes/train.py") + 1 :])
    assert training_args.use_vllm and training_args.vllm_mode == "colocate" and training_args.max_steps == 3
    assert training_args.vllm_enable_sleep_mode and script_args.master_weights == "fp32"
    assert script_args.eval_benchmarks == "math" and training_args.bf16
    for backend in ("vllm", "transformers"):
        command = _step(steps, f"eval-{backend}").command
        (args,) = TrlParser((EvaluationArguments,)).parse_args_and_config(args=command[2:])
        assert args.backend == backend and args.limit == 20 and args.data == "suite"
    model = _step(steps, "model").command
    assert model[1:3] == ["-m", "trl_drgrpo.demo.pretrain"]
    parsed = {f.name for f in pretrain.fields(pretrain.PretrainArguments)}
    assert {a[2:] for a in model[4:] if a.startswith("--")} <= parsed


def test_skip_and_bad_values_are_refused_or_honoured(tmp_path):
    steps = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--skip", "bench,eval"]))
    assert [s.name for s in steps] == ["model", "train"]
    for bad in (["--skip", "nope"], ["--eval_problems", "0"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_environment_check_names_what_is_missing_here():
    import torch

    checks = {c.name: c for c in gpu_check.check_environment()}
    assert checks["CUDA GPU"].ok == torch.cuda.is_available()
    assert checks["trl"].ok  # the pinned range is what is installed
    if not torch.cuda.is_available():
        assert not checks["CUDA GPU"].ok and "CUDA" in checks["CUDA GPU"].needed
        assert not checks["vllm"].ok  # no vLLM, or vLLM's CPU build: neither runs the GPU check


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the refusal on a machine without GPU"
)
def test_without_a_gpu_it_refuses_before_running_anything(tmp_path, capsys):
    assert gpu_check.main(["--output_dir", str(tmp_path / "out")]) == 2
    assert "missing CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_agreement_and_table_read_what_the_steps_wrote(tmp_path):
    for backend, responses in (("vllm", ["a", "b", "c"]), ("transformers", ["a", "x", "c"])):
        (tmp_path / f"eval-{backend}").mkdir()
        lines = [
            json.dumps({"benchmark": "math", "index": i, "response": r}) for i, r in enumerate(responses)
        ]
        (tmp_path / f"eval-{backend}" / "samples.jsonl").write_text("\n".join(lines) + "\n")
    assert gpu_check.agreement(tmp_path) == (2, 3)
    assert gpu_check.table([("a", "ok", "1", "x")]).splitlines()[2] == "| a | ok | 1 | x |"


def test_make_gpu_check_dry_run_prints_the_plan(tmp_path):
    result = subprocess.run(
        ["make", "-s", "gpu-check", "DRY_RUN=1", f"PYTHON={sys.executable}", f"ARGS=--output_dir {tmp_path} --num_gpus 1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Environment:" in out and "Plan (5 steps" in out and "dry run: nothing was run" in out
    assert "benchmarks/bench_trainer.py --bf16" in out and not any(tmp_path.iterdir())


def test_a_run_writes_one_table_with_each_steps_status(tmp_path, monkeypatch, capsys):
    """The run loop on stand-in steps (this machine has no GPU): statuses, a failing step, the table file."""
    ok = gpu_check.Check("CUDA GPU", "stand-in", True)
    monkeypatch.setattr(gpu_check, "check_environment", lambda: [ok])
    monkeypatch.setattr(gpu_check, "write_train_data", lambda path: None)
    py = sys.executable
    steps = [
        gpu_check.Step("bench", [py, "-c", "print('ratio 1.01')"], 60),
        gpu_check.Step("train", [py, "-c", "import sys; sys.exit(3)"], 60),
    ]
    monkeypatch.setattr(gpu_check, "plan", lambda args: steps)
    assert gpu_check.main(["--output_dir", str(tmp_path), "--eval_data", str(tmp_path)]) == 1  # a step failed
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| bench | ok |" in table and "ratio 1.01" in table
    assert "| train | FAILED (rc 3" in table
    assert table.strip() in capsys.readouterr().out


# ---- driver and CUDA (the environment check's three ways of having no GPU) --------------------------------------
PROC_VERSION = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build  (dvs-builder@U16-I3-B03-4-3)"
    "  Tue Feb 18 2025\nGCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n"
)


def test_driver_version_is_read_from_the_kernel_module_file_or_nvidia_smi():
    assert gpu_check.parse_driver_version(PROC_VERSION) == "570.124.06"
    old = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    assert gpu_check.parse_driver_version(old) == "535.104.05"
    assert gpu_check.parse_driver_version("580.65.06\n580.65.06\n") == "580.65.06"  # nvidia-smi, two GPUs
    assert gpu_check.parse_driver_version("") is None
    assert gpu_check.parse_driver_version("NVIDIA-SMI has failed because it couldn't communicate") is None


def test_driver_version_falls_back_to_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "DRIVER_FILE", tmp_path / "absent")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 575.57.08\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_check.nvidia_driver_version() == "575.57.08"
    smi.unlink()
    assert gpu_check.nvidia_driver_version() is None  # neither: no driver
    (tmp_path / "version").write_text(PROC_VERSION)
    monkeypatch.setattr(gpu_check, "DRIVER_FILE", tmp_path / "version")
    assert gpu_check.nvidia_driver_version() == "570.124.06"


def test_required_driver_follows_the_cuda_major_version():
    assert gpu_check.required_driver("13.0") == "580" and gpu_check.required_driver("13.2") == "580"
    assert gpu_check.required_driver("12.8") == "525.60.13"
    assert gpu_check.required_driver("nonsense") is None and gpu_check.required_driver("99.0") is None


def _gpu_check_with(monkeypatch, cuda: str | None, driver: str | None, devices: int = 0):
    """check_environment()'s "CUDA GPU" row with stand-ins for torch's build, its devices and the driver."""
    import torch

    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Stand-in GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: devices > 0)
    monkeypatch.setattr(gpu_check, "nvidia_driver_version", lambda: driver)
    return {c.name: c for c in gpu_check.check_environment()}["CUDA GPU"]


def test_cpu_only_torch_is_named_as_such(monkeypatch):
    check = _gpu_check_with(monkeypatch, None, "580.65.06")
    assert not check.ok and "CPU-only torch" in check.found and "driver 580.65.06 present" in check.found
    assert "CUDA build of torch" in check.needed
    assert "too old" not in check.found


def test_a_driver_too_old_for_the_wheels_cuda_is_named_with_both_versions(monkeypatch):
    check = _gpu_check_with(monkeypatch, "13.0", "570.124.06")
    assert not check.ok and "570.124.06 is too old" in check.found and "CUDA 13.0" in check.found
    assert "driver >= 580" in check.needed and "docs/gpu.md#nvidia-driver-and-cuda" in check.needed
    assert "CPU-only" not in check.found
    # the same driver is new enough for a CUDA 12.8 build: then it is not the driver
    check = _gpu_check_with(monkeypatch, "12.8", "570.124.06")
    assert not check.ok and "too old" not in check.found and "sees no GPU" in check.found
    # version order, not string order: 1000.1 > 580
    assert "too old" not in _gpu_check_with(monkeypatch, "13.0", "1000.1").found


def test_no_driver_means_no_gpu(monkeypatch):
    check = _gpu_check_with(monkeypatch, "13.0", None)
    assert not check.ok and "no NVIDIA driver found" in check.found and ">= 580" in check.needed


def test_a_visible_gpu_passes_with_its_driver(monkeypatch):
    check = _gpu_check_with(monkeypatch, "13.0", "580.65.06", devices=2)
    assert check.ok and check.found.startswith("2 x Stand-in GPU") and "driver 580.65.06" in check.found


def test_a_too_old_driver_stops_the_run_with_one_line(monkeypatch, tmp_path, capsys):
    _gpu_check_with(monkeypatch, "13.0", "535.104.05")
    assert gpu_check.main(["--output_dir", str(tmp_path / "out"), "--skip", "bench"]) == 2
    out, err = capsys.readouterr()
    assert "MISSING CUDA GPU: none: NVIDIA driver 535.104.05 is too old" in out and "driver >= 580" in out
    assert "missing CUDA GPU" in err and not (tmp_path / "out").exists()


# ---- time limits for a cold start, and the multi-process step ---------------------------------------------------
VLLM_STEPS = {"train", "train-multi", "eval-vllm"}


def test_steps_that_start_vllm_get_the_cold_start_allowance(tmp_path):
    warm = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--cold_start_s", "0"]))
    cold = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--cold_start_s", "300"]))
    for w, c in zip(warm, cold, strict=True):
        assert c.timeout_s - w.timeout_s == (300 if w.name in VLLM_STEPS else 0), w.name
    assert sum(s.timeout_s for s in warm) <= 8 * 60  # one GPU, caches warm
    default = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path)]))
    assert all(
        d.timeout_s - w.timeout_s == gpu_check.COLD_START_S
        for d, w in zip(default, warm, strict=True)
        if w.name in VLLM_STEPS
    )
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--cold_start_s", "-1"])


def test_more_than_one_gpu_adds_the_multi_process_step(tmp_path):
    def names(*argv):
        return [s.name for s in gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), *argv]))]

    assert "train-multi" not in names("--num_gpus", "1") and "train-multi" not in names("--num_gpus", "0")
    assert names("--num_gpus", "2") == [
        "bench",
        "model",
        "train",
        "train-multi",
        "eval-vllm",
        "eval-transformers",
    ]
    assert "train-multi" not in names("--num_gpus", "4", "--skip", "multi")
    assert "train-multi" not in names("--num_gpus", "4", "--skip", "train")
    steps = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--num_gpus", "16"]))
    multi, train = _step(steps, "train-multi"), _step(steps, "train")
    launch = multi.command[: multi.command.index("recipes/train.py")]
    assert launch[1:] == [
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "accelerate_configs/zero2.yaml",
        "--num_processes",
        "8",
    ]  # fmt: skip  (the paper's 8, not all 16)
    args, single = multi.command[len(launch) :], train.command[train.command.index("recipes/train.py") :]
    out = args.index("--output_dir") + 1
    assert args[out] == str(tmp_path / "train-multi") and single[out] == str(tmp_path / "train")
    assert args[:out] + args[out + 1 :] == single[:out] + single[out + 1 :]  # otherwise the same training
    assert multi.timeout_s >= train.timeout_s


def test_the_multi_process_command_parses_with_accelerates_parser(tmp_path):
    from accelerate.commands.launch import launch_command_parser

    steps = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--num_gpus", "2"]))
    command = _step(steps, "train-multi").command
    parsed = launch_command_parser().parse_args(command[3:])
    assert parsed.num_processes == 2 and parsed.config_file == "accelerate_configs/zero2.yaml"
    assert parsed.training_script == "recipes/train.py" and "--use_vllm" in parsed.training_script_args
    assert (REPO_ROOT / parsed.config_file).is_file()


def test_dry_run_with_a_stand_in_gpu_count_shows_the_multi_process_plan(tmp_path):
    result = subprocess.run(
        ["make", "-s", "gpu-check", "DRY_RUN=1", f"PYTHON={sys.executable}",
         f"ARGS=--output_dir {tmp_path} --num_gpus 8"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Plan (6 steps" in result.stdout and "[train-multi]" in result.stdout
    assert (
        "accelerate.commands.launch --config_file accelerate_configs/zero2.yaml --num_processes 8"
        in result.stdout
    )


def test_a_step_past_its_limit_is_stopped_with_every_process_it_started(tmp_path):
    """A launcher's ranks must not outlive a timed-out step (they would hold the GPU): the grandchild dies too."""
    import psutil

    pid_file = tmp_path / "grandchild.pid"
    child = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(600)"
    )
    step = gpu_check.Step("slow", [sys.executable, "-c", child], 10)
    assert gpu_check.run_step(step, tmp_path / "slow.log", dict(os.environ), grace_s=5) is None
    grandchild = int(pid_file.read_text())
    try:
        assert (
            not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        )
    finally:
        if psutil.pid_exists(grandchild):
            psutil.Process(grandchild).kill()
    ok = gpu_check.Step("ok", [sys.executable, "-c", "print('fine')"], 30)
    assert gpu_check.run_step(ok, tmp_path / "ok.log", dict(os.environ)) == 0
    assert (tmp_path / "ok.log").read_text().strip() == "fine"
