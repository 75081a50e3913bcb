"""What a run loads from the Hugging Face Hub, and a one-line stop when it cannot get it offline.

A recipe loads a model (and its tokenizer), a training set and, for the in-training evaluation, benchmarks; an
evaluation loads a model and benchmarks. On a compute node without internet they must already be in the Hugging
Face cache (``trl-drgrpo download`` puts them there). Before anything heavy is imported, ``train`` and ``evaluate``
ask the Hub once whether it answers (:func:`go_offline_if_unreachable`) and go offline if not; once their
arguments are checked, offline (``HF_HUB_OFFLINE=1``) an asset missing from the cache stops the command with one
line naming it and the command that fetches it (:func:`check_offline`), instead of the libraries' retries and
tracebacks.

Only the standard library is imported here (``datasets`` only to name a cached dataset's folder, when offline).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evaluation.benchmarks import BENCHMARKS, resolve_benchmarks  # names and Hub layouts only: light

DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")  # data.load_problems reads these as files
WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
HUB_TIMEOUT_S = 3.0
UNREACHABLE = "TRL_DRGRPO_HUB_UNREACHABLE"  # set with HF_HUB_OFFLINE=1 when the Hub did not answer
# The recipe keys that say what train loads from the Hub
ASSET_OPTIONS = (
    "model_name_or_path",
    "model_revision",
    "dataset_name",
    "dataset_config",
    "dataset_train_split",
    "dataset_test_split",
    "eval_benchmarks",
    "eval_data",
)


class MissingAssetError(ValueError):
    """An asset the command needs is not in the cache and cannot be fetched now (one line, for the CLI)."""


@dataclass(frozen=True)
class Asset:
    """One thing a run loads from the Hub: a model, a training set or a benchmark."""

    kind: str  # "model", "dataset" (training set), "benchmark" or "suite" (evaluation data, one split per benchmark)
    repo_id: str
    revision: str | None = None
    config: str | None = None
    splits: tuple[str, ...] = ()
    name: str = ""  # a benchmark's short name

    def __str__(self) -> str:
        if self.kind == "model":
            return f"model {self.repo_id}" + (f" (revision {self.revision})" if self.revision else "")
        if self.kind == "benchmark":
            return f"benchmark {self.name} ({self.repo_id})"
        if self.kind == "suite":
            return f"evaluation suite {self.repo_id}"
        return f"training set {self.repo_id}" + (f" (config {self.config})" if self.config else "")


def on_hub(name: Any) -> bool:
    """Whether ``name`` is loaded from the Hub: not a local folder or data file, and shaped like a repo id."""
    if not isinstance(name, str) or not name or name.startswith((".", "/", "~")):
        return False
    path = Path(name).expanduser()
    if path.exists() or path.suffix.lower() in DATA_SUFFIXES:
        return False
    return re.fullmatch(r"[\w][\w.-]*(/[\w][\w.-]*)?", name) is not None and ".." not in name


def benchmark_assets(benchmarks: str | Sequence[str] | None, data: Any = None) -> list[Asset]:
    """The benchmarks' Hub datasets; ``data``, a suite with one split per benchmark, replaces them."""
    if not benchmarks:
        return []
    if data:
        return [Asset("suite", data)] if on_hub(data) else []
    specs = [BENCHMARKS[name] for name in resolve_benchmarks(benchmarks)]
    return [Asset("benchmark", s.hub_path, splits=(s.hub_split,), name=s.name) for s in specs]


def recipe_assets(config: Mapping[str, Any]) -> list[Asset]:
    """What ``train`` loads from the Hub for a recipe (its YAML keys, command-line overrides applied)."""
    assets = []
    model = config.get("model_name_or_path")
    if on_hub(model):
        revision = config.get("model_revision")
        revision = None if revision == "main" else revision  # main: the default branch, said by no flag
        assets.append(Asset("model", model, revision=revision))
    dataset = config.get("dataset_name")
    if on_hub(dataset):
        splits = [config.get("dataset_train_split") or "train", config.get("dataset_test_split")]
        assets.append(
            Asset(
                "dataset", dataset, config=config.get("dataset_config"), splits=tuple(s for s in splits if s)
            )
        )
    return assets + benchmark_assets(config.get("eval_benchmarks"), config.get("eval_data"))


def evaluation_assets(
    model: Any, benchmarks: str | Sequence[str] | None, data: Any = None, revision: str | None = None
) -> list[Asset]:
    """What ``evaluate`` loads from the Hub."""
    found = [Asset("model", model, revision=revision)] if on_hub(model) else []
    return found + benchmark_assets(benchmarks, data)


def describe(assets: Sequence[Asset]) -> str:
    """``assets`` in words, the benchmarks named together."""
    names = [a.name for a in assets if a.kind == "benchmark"]
    parts = [f"the {a}" for a in assets if a.kind != "benchmark"]
    if names:
        parts.append(f"the benchmark{'s' if len(names) > 1 else ''} {', '.join(names)} (Hub datasets)")
    return " and ".join(parts)


def download_command(assets: Iterable[Asset]) -> str:
    """The ``trl-drgrpo download`` command that fetches ``assets``."""
    assets = list(assets)
    parts = ["trl-drgrpo", "download"]
    for a in assets:
        if a.kind == "model":
            parts += ["--model", a.repo_id] + (["--revision", a.revision] if a.revision else [])
        elif a.kind == "suite":
            parts += ["--eval_data", a.repo_id]
        elif a.kind == "dataset":
            parts += ["--dataset", a.repo_id] + (["--dataset_config", a.config] if a.config else [])
            parts += ["--splits", ",".join(a.splits)] if a.splits and a.splits != ("train",) else []
    names = [a.name for a in assets if a.kind == "benchmark"]
    if names or not any(a.kind == "suite" for a in assets):  # (a suite replaces the benchmarks)
        parts += ["--benchmarks", ",".join(names) if names else "none"]
    return shlex.join(parts)


# ---- where the libraries cache what they download (their own defaults and environment variables) ----------


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` (or transformers' older ``TRANSFORMERS_OFFLINE``) is set."""
    return _true(os.environ.get("HF_HUB_OFFLINE")) or _true(os.environ.get("TRANSFORMERS_OFFLINE"))


def hf_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(os.environ.get("HF_HOME", default)).expanduser()


def hub_cache() -> Path:
    """huggingface_hub's cache (models, and the files datasets downloads)."""
    path = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(path).expanduser() if path else hf_home() / "hub"


def datasets_cache() -> Path:
    """The datasets library's cache of prepared datasets (what it loads offline)."""
    path = os.environ.get("HF_DATASETS_CACHE")
    return Path(path).expanduser() if path else hf_home() / "datasets"


def model_cached(repo_id: str, revision: str | None = None, cache: Path | None = None) -> bool:
    """A snapshot of ``repo_id`` at ``revision`` (default: main) with its config and weights is in the hub cache."""
    folder = (cache or hub_cache()) / f"models--{repo_id.replace('/', '--')}"
    revision = revision or "main"
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = folder / "snapshots" / commit
    if not (snapshot / "config.json").is_file():
        return False
    return any(glob.glob(str(snapshot / pattern)) for pattern in WEIGHTS)


def dataset_cached(repo_id: str, config: str | None = None, cache: Path | None = None) -> bool:
    """``datasets.load_dataset(repo_id, config)`` finds a prepared copy offline (the folder its offline fallback,
    ``CachedDatasetModuleFactory``, looks in: ``<namespace>___<name>/<config>/<version>/<hash>``)."""
    from datasets.naming import camelcase_to_snakecase  # offline only: datasets is a few seconds to import

    *namespace, name = repo_id.split("/")
    root = (cache or datasets_cache()) / "___".join([*namespace, camelcase_to_snakecase(name)])
    pattern = root / (glob.escape(config) if config else "*") / "*" / "*"
    return any(os.path.isdir(p) for p in glob.glob(str(pattern)))


def cached(asset: Asset, hub: Path | None = None, datasets: Path | None = None) -> bool:
    if asset.kind == "model":
        return model_cached(asset.repo_id, asset.revision, hub)
    return dataset_cached(asset.repo_id, asset.config, datasets)


def hub_reachable(timeout_s: float = HUB_TIMEOUT_S) -> bool:
    """One request to the Hub's endpoint, ``timeout_s`` at most: any HTTP answer means it is reachable."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/api/models?limit=1", method="HEAD"), timeout=timeout_s
        )
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # URLError, timeouts, refused connections, a malformed HF_ENDPOINT
        return False
    return True


def local_path_missing(*values: Any) -> bool:
    """Whether one of ``values`` names a local path that does not exist (its loader reports that, as before)."""
    return any(
        isinstance(v, str) and v and not on_hub(v) and not Path(v).expanduser().exists() for v in values
    )


def go_offline_if_unreachable(assets: Sequence[Asset]) -> None:
    """Before the libraries are imported (they read ``HF_HUB_OFFLINE`` then): with assets to load from the Hub, not
    offline already and the Hub unreachable (one request, a few seconds at most), set ``HF_HUB_OFFLINE=1`` for this
    process and those it starts, so that the libraries read the cache instead of retrying."""
    if assets and not offline_requested() and not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ[UNREACHABLE] = "1"


def check_offline(assets: Sequence[Asset], command: str) -> None:
    """Offline, stop with one line when an asset is not in the cache (naming it and the command that fetches it)."""
    if not assets or not offline_requested():
        return
    missing = [a for a in assets if not cached(a)]
    unreachable = os.environ.get(UNREACHABLE) == "1"
    if not missing:
        if unreachable and os.environ.get("RANK", "0") == "0":
            print(f"{command}: the Hugging Face Hub is unreachable; loading from the cache", file=sys.stderr)
        return
    why = "the Hub is unreachable" if unreachable else "HF_HUB_OFFLINE is set"
    raise MissingAssetError(
        f"{command} needs {describe(missing)}, not in the Hugging Face cache ({hf_home()}), "
        f"and {why}: fetch {'it' if len(missing) == 1 else 'them'} on a machine with internet with "
        f"`{download_command(missing)}` (same HF_HOME), then run again"
    )


def ensure_available(assets: Sequence[Asset], command: str) -> None:
    """Both steps at once, for a command that checks before importing the libraries (``make gpu-check``)."""
    go_offline_if_unreachable(assets)
    check_offline(assets, command)
