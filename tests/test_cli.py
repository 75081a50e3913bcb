"""``trl-drgrpo``: every subcommand's --help works, and user errors print one line and exit non-zero without
a traceback (run as a user would, in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trl_drgrpo import cli

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "OMP_NUM_THREADS": "1"}
ENV.pop("TRL_DRGRPO_TRACEBACK", None)


def _run(*args: str, entry: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = entry or [sys.executable, "-m", "trl_drgrpo.cli"]
    return subprocess.run([*cmd, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_top_level_help_lists_every_command():
    result = _run("--help")
    assert result.returncode == 0
    for name in ("train", "evaluate", "analyze", "demo", "tiny"):
        assert f"  {name} " in result.stdout
    assert _run().returncode == 2  # no command: usage, non-zero


def test_console_script_is_installed():
    script = shutil.which("trl-drgrpo", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e . did not create the trl-drgrpo console script"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("trl_drgrpo ")


@pytest.mark.slow  # a subprocess that imports torch/TRL: seconds, more under load
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("train", "Dr. GRPO run (trl_drgrpo):"),
        ("evaluate", "--gpu_memory_utilization"),
        ("analyze", "reflection"),
        ("demo", "--output_dir"),
        ("tiny", "output_dir"),
    ],
)
def test_every_subcommand_has_help(command, expected):
    result = _run(command, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
    assert "Traceback" not in result.stderr


def test_unknown_command_is_one_line():
    _one_line_error(_run("trian"), "unknown command 'trian'", "train")


@pytest.mark.slow  # a subprocess that imports torch/TRL: seconds, more under load
def test_evaluate_unknown_benchmark(tmp_path):
    result = _run(
        "evaluate", "--model", "m", "--output_dir", str(tmp_path / "o"), "--benchmarks", "aime,gsm8k"
    )
    _one_line_error(result, "trl-drgrpo evaluate: error:", "gsm8k")


@pytest.mark.slow  # a subprocess that imports torch/TRL: seconds, more under load
def test_evaluate_missing_data_folder(tmp_path):
    result = _run(
        "evaluate", "--model", "m", "--output_dir", str(tmp_path / "o"), "--data", str(tmp_path / "no_suite")
    )
    _one_line_error(result, "no_suite")


@pytest.mark.slow  # a subprocess that imports torch/TRL: seconds, more under load
def test_evaluate_bad_yaml_key_and_dtype(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"model": "m", "output_dir": str(tmp_path / "o"), "benchmark": "aime"}))
    _one_line_error(_run("evaluate", "--config", str(config)), "benchmark")
    result = _run("evaluate", "--model", "m", "--output_dir", str(tmp_path / "o"), "--dtype", "fp8")
    _one_line_error(result, "unknown dtype 'fp8'")


@pytest.mark.slow  # a subprocess that imports torch/TRL: seconds, more under load
def test_train_bad_yaml_key(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    bad = {
        "model_name_or_path": str(
            tmp_path
        ),  # a folder: offline, a Hub id not in the cache would be named first
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "learning_rat": 1e-6,
    }
    recipe.write_text(yaml.safe_dump(bad))
    _one_line_error(_run("train", "--config", str(recipe)), "learning_rat")
    # the thin script behaves the same
    result = _run("--config", str(recipe), entry=[sys.executable, str(REPO / "recipes" / "train.py")])
    _one_line_error(result, "learning_rat")


@pytest.mark.slow
def test_train_missing_data_folder_and_unknown_template(tmp_path, tiny_model_dir):
    recipe = {
        "model_name_or_path": tiny_model_dir,
        "dataset_name": str(tmp_path / "no_data"),
        "report_to": "none",
        "use_cpu": True,
        "output_dir": str(tmp_path / "o"),
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    _one_line_error(_run("train", "--config", str(tmp_path / "r.yaml")), "no_data")
    _one_line_error(
        _run("train", "--config", str(tmp_path / "r.yaml"), "--template", "r2"), "unknown template 'r2'"
    )


@pytest.mark.slow  # a subprocess that imports torch/TRL: seconds, more under load
def test_demo_and_tiny_argument_errors_have_no_traceback(tmp_path):
    for result in (_run("tiny"), _run("demo", "--launcher", "mpi")):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and "error:" in result.stderr


def test_launch_options_become_an_accelerate_command(tmp_path):
    config = tmp_path / "acc.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\n")
    launch, rest = cli.split_launch_options(
        ["--config", "r.yaml", "--num_processes", "2", f"--accelerate_config={config}", "--seed", "1"]
    )
    assert launch == {"num_processes": "2", "accelerate_config": str(config)}
    assert rest == ["--config", "r.yaml", "--seed", "1"]
    cmd = cli.launch_command(launch, rest)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--config_file") + 1] == str(config)
    assert cmd[-6:] == ["trl_drgrpo.cli", "train", "--config", "r.yaml", "--seed", "1"]
    with pytest.raises(ValueError, match="positive integer"):
        cli.split_launch_options(["--num_processes", "two"])
    with pytest.raises(ValueError, match="does not exist"):
        cli.launch_command({"accelerate_config": str(tmp_path / "missing.yaml")}, [])


def test_run_turns_user_errors_into_one_line(capsys, monkeypatch):
    def broken(argv):
        raise ValueError("bad\nvalue  here")

    monkeypatch.setattr(cli, "load_command", lambda name: broken)
    assert cli.run("evaluate", []) == 1
    assert capsys.readouterr().err == "trl-drgrpo evaluate: error: bad value here\n"
    monkeypatch.setenv("TRL_DRGRPO_TRACEBACK", "1")
    with pytest.raises(ValueError):
        cli.run("evaluate", [])


def test_launch_is_checked_once_before_the_processes_start(tmp_path, monkeypatch):
    launched = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: launched.append(cmd) or 0)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"report_to": "none", "template": "r1", "learning_rat": 1e-6}))
    with pytest.raises(ValueError, match="unknown option.*learning_rat"):
        cli.train(["--num_processes", "2", "--config", str(recipe)])
    recipe.write_text("report_to: none\ntemplate: no\n")  # YAML `no` is the no template
    with pytest.raises(ValueError, match="unknown template 'r2'"):
        cli.train(["--num_processes", "2", "--config", str(recipe), "--template", "r2"])
    with pytest.raises(ValueError, match="unrecognized arguments: --lerning_rate"):
        cli.train(["--num_processes", "2", "--config", str(recipe), "--lerning_rate", "1"])
    assert launched == []
    assert cli.train(["--num_processes", "2", "--config", str(recipe), "--seed", "3"]) == 0
    (cmd,) = launched
    assert cmd[-5:] == ["train", "--config", str(recipe), "--seed", "3"]
