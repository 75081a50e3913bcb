"""Offline compute nodes: `trl-drgrpo download` fetches what a recipe loads (a fake Hub here), the cache checks agree
with the libraries' own offline lookups, and train / evaluate / gpu-check stop with one line when an asset is missing
offline or the Hub is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_gpu_check import gpu_check  # scripts/gpu_check.py, loaded once
from trl_drgrpo import assets as A
from trl_drgrpo.download import main as download

RECIPE = REPO_ROOT / "recipes" / "qwen2.5-math-1.5b" / "drgrpo_qwen_math.yaml"
HUB_PATHS = {
    "HuggingFaceH4/aime_2024": "train",
    "AI-MO/aimo-validation-amc": "train",
    "HuggingFaceH4/MATH-500": "test",
    "math-ai/minervamath": "test",
    "math-ai/olympiadbench": "test",
}


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return home


def _fake_model(hub: Path, repo_id: str, revision: str | None = None, weights: bool = True) -> Path:
    """What huggingface_hub's snapshot_download leaves in its cache."""
    folder = hub / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / (revision or "main")).write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "tokenizer.json").write_text("{}")
    if weights:
        (snapshot / "model.safetensors").write_bytes(b"")
    return snapshot


def _fake_dataset(datasets_cache: Path, repo_id: str, config: str | None = None) -> None:
    """What datasets.load_dataset leaves prepared (namespace___name/config/version/hash), by datasets' own naming."""
    from datasets.naming import camelcase_to_snakecase

    namespace, name = repo_id.split("/")
    (
        datasets_cache
        / f"{namespace}___{camelcase_to_snakecase(name)}"
        / (config or "default")
        / "0.0.0"
        / "abc"
    ).mkdir(parents=True, exist_ok=True)


class FakeHub:
    """Stands in for snapshot_download and load_dataset: records the calls, writes the caches as they do."""

    def __init__(self, splits: dict[str, list[str]] | None = None):
        self.calls: list[tuple] = []
        self.splits = splits or {}

    def snapshot_download(self, repo_id, revision=None, cache_dir=None, ignore_patterns=None):
        self.calls.append(("model", repo_id, revision, cache_dir))
        assert "original/*" in ignore_patterns
        return str(_fake_model(Path(cache_dir) if cache_dir else A.hub_cache(), repo_id, revision))

    def load_dataset(self, repo_id, config=None, cache_dir=None):
        self.calls.append(("dataset", repo_id, config, cache_dir))
        _fake_dataset(Path(cache_dir) if cache_dir else A.datasets_cache(), repo_id, config)
        return {s: [0, 1] for s in self.splits.get(repo_id, [HUB_PATHS.get(repo_id, "train")])}


@pytest.fixture
def fake_hub(monkeypatch):
    import datasets
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(datasets, "load_dataset", hub.load_dataset)
    return hub


def test_download_fetches_a_recipes_model_training_set_and_benchmarks(
    tmp_path, hf_home, fake_hub, monkeypatch, capsys
):
    cache = tmp_path / "offline-cache"
    assert download(["--config", str(RECIPE), "--cache_dir", str(cache)]) == 0
    assert fake_hub.calls == [
        ("model", "Qwen/Qwen2.5-Math-1.5B", None, str(cache / "hub")),
        ("dataset", "hiyouga/math12k", None, str(cache / "datasets")),
        *[("dataset", path, None, str(cache / "datasets")) for path in HUB_PATHS],
    ]
    assert f"all 7 in the cache: HF_HOME={cache} HF_HUB_OFFLINE=1" in capsys.readouterr().out
    # on the compute node: the same recipe's check passes offline with that cache, and fails with an empty one
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    A.check_offline(A.recipe_assets({"model_name_or_path": "Qwen/Qwen2.5-Math-1.5B", "dataset_name": "hiyouga/math12k",
                                     "eval_benchmarks": "aime,amc,math,minerva,olympiad_bench"}), "train")  # fmt: skip
    monkeypatch.setenv("HF_HOME", str(hf_home))
    with pytest.raises(
        A.MissingAssetError, match="needs the model Qwen/Qwen2.5-Math-1.5B and the training set"
    ):
        A.check_offline(A.recipe_assets({"model_name_or_path": "Qwen/Qwen2.5-Math-1.5B",
                                         "dataset_name": "hiyouga/math12k"}), "train")  # fmt: skip


def test_download_takes_overrides_and_checks_splits(hf_home, fake_hub, capsys):
    assert download(["--model", "org/m", "--revision", "v1", "--benchmarks", "none"]) == 0
    assert fake_hub.calls == [("model", "org/m", "v1", None)]  # the default cache: the libraries' own
    assert A.model_cached("org/m", "v1", hf_home / "hub") and not A.model_cached(
        "org/m", None, hf_home / "hub"
    )
    fake_hub.calls.clear()
    assert (
        download(["--model", "org/m", "--dataset", "org/d", "--dataset_config", "c", "--benchmarks", "math"])
        == 0
    )
    assert [c[:3] for c in fake_hub.calls] == [("model", "org/m", None), ("dataset", "org/d", "c"),
                                               ("dataset", "HuggingFaceH4/MATH-500", None)]  # fmt: skip
    fake_hub.splits["org/d"] = ["train"]
    with pytest.raises(ValueError, match="training set org/d has no split test; its splits are train"):
        download(["--dataset", "org/d", "--splits", "train,test", "--benchmarks", "none"])
    fake_hub.calls.clear()
    assert download(["--eval_data", "org/suite"]) == 0  # a suite of one's own replaces the five benchmarks
    assert [c[:2] for c in fake_hub.calls] == [("dataset", "org/suite")]
    command = A.download_command(A.evaluation_assets("org/m", "math", "org/suite"))
    assert command == "trl-drgrpo download --model org/m --eval_data org/suite"
    fake_hub.calls.clear()
    assert download(command.split()[2:]) == 0  # the command a missing-asset line names fetches exactly those
    assert [c[:2] for c in fake_hub.calls] == [("model", "org/m"), ("dataset", "org/suite")]
    assert download(["--model", "./local", "--benchmarks", "none"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


def test_download_dry_run_fetches_nothing(hf_home, fake_hub, capsys):
    _fake_model(hf_home / "hub", "Qwen/Qwen2.5-Math-1.5B")
    assert download(["--config", str(RECIPE), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert fake_hub.calls == []
    assert "model Qwen/Qwen2.5-Math-1.5B: cached" in out and "training set hiyouga/math12k: to fetch" in out


def test_the_cache_checks_agree_with_the_libraries_offline_lookups(tmp_path):
    """model_cached / dataset_cached say yes exactly where huggingface_hub and datasets find a cached copy."""
    import datasets.load
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub, cache = tmp_path / "hub", tmp_path / "datasets"
    _fake_model(hub, "org/with-weights")
    _fake_model(hub, "org/no-weights", weights=False)
    assert A.model_cached("org/with-weights", cache=hub)
    assert snapshot_download("org/with-weights", local_files_only=True, cache_dir=hub)
    assert not A.model_cached("org/no-weights", cache=hub)  # a config alone does not make a model
    assert not A.model_cached("org/absent", cache=hub)
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("org/absent", local_files_only=True, cache_dir=hub)
    for repo_id in HUB_PATHS:
        assert not A.dataset_cached(repo_id, cache=cache)
        with pytest.raises(FileNotFoundError):
            datasets.load.CachedDatasetModuleFactory(repo_id, cache_dir=str(cache)).get_module()
        _fake_dataset(cache, repo_id)
        assert A.dataset_cached(repo_id, cache=cache)
        datasets.load.CachedDatasetModuleFactory(repo_id, cache_dir=str(cache)).get_module()


def test_assets_of_recipes_and_evaluations():
    assets = A.recipe_assets({"model_name_or_path": "org/m", "model_revision": "r", "dataset_name": "data.jsonl",
                              "eval_benchmarks": "math", "eval_data": None})  # fmt: skip
    assert [str(a) for a in assets] == ["model org/m (revision r)", "benchmark math (HuggingFaceH4/MATH-500)"]
    assert (
        A.recipe_assets(
            {"model_name_or_path": "/abs/model", "eval_benchmarks": "math", "eval_data": "/suite"}
        )
        == []
    )
    assert [a.kind for a in A.evaluation_assets("org/m", "amc", "org/suite")] == ["model", "suite"]
    command = A.download_command(A.recipe_assets({"dataset_name": "org/d", "dataset_test_split": "test"}))
    assert command == "trl-drgrpo download --dataset org/d --splits train,test --benchmarks none"


def test_unreachable_hub_with_everything_cached_goes_offline(hf_home, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # (set, so that the test's changes are undone)
    monkeypatch.setenv(A.UNREACHABLE, "0")
    monkeypatch.setattr(A, "hub_reachable", lambda timeout_s=A.HUB_TIMEOUT_S: True)
    A.ensure_available(
        A.evaluation_assets("org/absent", "math"), "evaluate"
    )  # online: the libraries fetch it
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    monkeypatch.setattr(A, "hub_reachable", lambda timeout_s=A.HUB_TIMEOUT_S: False)
    _fake_model(hf_home / "hub", "org/m")
    A.ensure_available(A.evaluation_assets("org/m", None), "evaluate")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ[A.UNREACHABLE] == "1"
    assert "Hub is unreachable; loading from the cache" in capsys.readouterr().err
    with pytest.raises(
        A.MissingAssetError, match="needs the model org/absent, .* and the Hub is unreachable"
    ):
        A.check_offline(A.evaluation_assets("org/absent", None), "evaluate")


def _run(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT", A.UNREACHABLE)
    }
    environ.update({"PYTHONPATH": str(REPO_ROOT), "HF_HOME": str(tmp_path / "empty-hf"), **env})
    start = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=environ)
    return result, time.monotonic() - start


# An endpoint that refuses connections at once: the Hub unreachable, as on a compute node without internet
UNREACHABLE = {"HF_ENDPOINT": "http://127.0.0.1:9"}
EVALUATE = [
    "recipes/evaluate.py",
    "--model",
    "Qwen/Qwen2.5-Math-1.5B",
    "--benchmarks",
    "math",
    "--output_dir",
    "x",
]
TRAIN = [
    "recipes/train.py",
    "--config",
    str(RECIPE.relative_to(REPO_ROOT)),
    "--report_to",
    "none",
    "--bf16",
    "false",
    "--use_cpu",
    "true",
]  # fmt: skip  (this machine has no GPU)


@pytest.mark.parametrize("hub", ["offline", "unreachable"])
@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_a_missing_asset_offline_is_one_line_naming_it_and_the_download(command, hub, tmp_path):
    args = [sys.executable, *(EVALUATE if command == "evaluate" else TRAIN)]
    result, took = _run(args, tmp_path, **({"HF_HUB_OFFLINE": "1"} if hub == "offline" else UNREACHABLE))
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]  # (not library warnings)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(
        f"trl-drgrpo {command}: error: trl-drgrpo {command} needs the model Qwen/Qwen2.5-Math-1.5B"
    )
    assert ("HF_HUB_OFFLINE is set" if hub == "offline" else "the Hub is unreachable") in lines[0]
    fetch = (
        "--benchmarks math"
        if command == "evaluate"
        else "--dataset hiyouga/math12k --benchmarks aime,amc,math"
    )
    assert f"`trl-drgrpo download --model Qwen/Qwen2.5-Math-1.5B {fetch}" in lines[0]
    print(f"{command}, {hub}: stopped after {took:.1f} s")
    assert took < 30  # imports on a loaded 2-core machine; no retries (huggingface_hub's take ~25 s more)


def test_gpu_check_stops_offline_without_the_math_benchmark(tmp_path, hf_home, monkeypatch, capsys):
    monkeypatch.setattr(
        gpu_check, "check_environment", lambda: [gpu_check.Check("CUDA GPU", "stand-in", True)]
    )
    monkeypatch.delenv("TRL_DRGRPO_EVAL_SUITE", raising=False)
    assert gpu_check.main(["--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # before the first step
    assert err.startswith("gpu-check: make gpu-check needs the benchmark math") and err.count("\n") == 1
    assert "`trl-drgrpo download --benchmarks math`" in err and "EVAL_DATA=" in err
    assert gpu_check.parse_args([]).eval_data is None  # no development folder as a default


def test_gpu_check_offline_with_a_downloaded_benchmark_or_a_suite(tmp_path, hf_home, monkeypatch, capsys):
    monkeypatch.delenv("TRL_DRGRPO_EVAL_SUITE", raising=False)
    monkeypatch.setattr(gpu_check, "check_environment", lambda: [])
    assert gpu_check.main(["--output_dir", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "Evaluation data: make gpu-check needs the benchmark math" in capsys.readouterr().out
    _fake_dataset(
        hf_home / "datasets", "HuggingFaceH4/MATH-500"
    )  # as after trl-drgrpo download --benchmarks math
    assert gpu_check.main(["--output_dir", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "Evaluation data: available" in capsys.readouterr().out
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    assert (
        gpu_check.main(["--output_dir", str(tmp_path / "out"), "--dry-run", "--eval_data", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "Evaluation data: available" in out and f"--data {tmp_path}" in out


@pytest.mark.slow
def test_after_download_the_same_evaluate_command_runs_offline(tmp_path, tiny_model_dir, eval_suite_path):
    """The model as download leaves it in the cache (the tiny model's files in huggingface_hub's layout under a
    Hub id): the real evaluate command loads it offline; with an empty cache it stops with the one line."""
    import shutil

    snapshot = _fake_model(tmp_path / "hf" / "hub", "org/tiny", weights=False)
    for item in Path(tiny_model_dir).iterdir():
        shutil.copy(item, snapshot / item.name)
    command = [sys.executable, "recipes/evaluate.py", "--model", "org/tiny", "--template", "no", "--benchmarks",
               "math", "--data", str(eval_suite_path), "--limit", "1", "--max_tokens", "4", "--backend",
               "transformers", "--output_dir", str(tmp_path / "out")]  # fmt: skip
    result, _ = _run(command, tmp_path, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "summary.json").is_file()
    result, _ = _run(command, tmp_path, HF_HUB_OFFLINE="1")  # an empty cache
    assert result.returncode == 1 and "needs the model org/tiny," in result.stderr
