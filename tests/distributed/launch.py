"""Launch ``recipes/train.py`` as 2 CPU processes (DDP over gloo) and collect what each rank printed.

Traps of CPU launches: see ../shared/notes/cpu-distributed.md. torch elastic (under ``accelerate launch``)
starts each rank in a session of its own, so on a timeout the ranks are killed one by one, then the launcher.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from trl_drgrpo.training.checkpointing import FAULTS_DIR_ENV, FAULTS_ENV

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "recipes" / "train.py"


@dataclass
class Launch:
    code: int | None  # None: it hung and was killed
    stderr: str  # the launcher's
    ranks: dict[int, str]  # each rank's stderr
    ended: float  # time.time() when the launcher ended (or was killed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_ranks(
    workload: Path,
    out: Path,
    faults: str = "",
    *,
    timeout_s: float = 300,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    config: str = "cpu_ddp.yaml",
) -> Launch:
    """Run the 2-process training of ``workload/recipe.yaml`` into ``out/run`` (faults: see ``fault_point``) under
    ``accelerate_configs/<config>``."""
    logs = out / f"logs-{time.monotonic_ns()}"
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        FAULTS_ENV: faults,
        FAULTS_DIR_ENV: str(out),
        **(env or {}),
    }
    environment.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "accelerate_configs" / config),
        "--main_process_port",
        str(free_port()),
        "--log_dir",  # with --tee: each rank's output also goes to <log_dir>/<run id>/attempt_0/<rank>/
        str(logs),
        "--tee",
        "3",
        str(SCRIPT),
        "--config",
        str(workload / "recipe.yaml"),
        "--output_dir",
        str(out / "run"),
        *(args or []),
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    code: int | None
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        _, stderr = proc.communicate()
        code = None
    ended = time.time()
    ranks = {}
    for rank in (0, 1):
        found = list(logs.glob(f"*/attempt_0/{rank}/stderr.log"))
        ranks[rank] = found[0].read_text() if found else ""
    return Launch(code, stderr, ranks, ended)
