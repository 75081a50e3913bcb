"""`make gpu-check` (scripts/gpu_check.py): its plan, its parsing and its dry run, on a machine without a GPU."""

from __future__ import annotations

import importlib.util
import json
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
    steps = gpu_check.plan(gpu_check.parse_args(["--output_dir", str(tmp_path), "--eval_data", "suite"]))
    assert [s.name for s in steps] == ["bench", "model", "train", "eval-vllm", "eval-transformers"]
    assert sum(s.timeout_s for s in steps) <= 8 * 60
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
        ["make", "-s", "gpu-check", "DRY_RUN=1", f"PYTHON={sys.executable}", f"ARGS=--output_dir {tmp_path}"],
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
