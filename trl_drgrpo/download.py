"""``trl-drgrpo download``: fetch, on a machine with internet, what a recipe or an evaluation loads from the Hub.

    trl-drgrpo download --config recipes/qwen2.5-math-1.5b/drgrpo_qwen_math.yaml   # model, training set, benchmarks
    trl-drgrpo download --model Qwen/Qwen2.5-Math-1.5B                            # what `evaluate` needs
    trl-drgrpo download --config <recipe> --cache_dir /shared/hf                  # into an HF_HOME of its own

Everything goes into the Hugging Face cache the libraries read (``$HF_HOME``, default ``~/.cache/huggingface``),
or the one ``--cache_dir`` names; the same command then runs on a node without internet with ``HF_HUB_OFFLINE=1``
(and ``HF_HOME`` set to that folder). The model is fetched as ``transformers`` and vLLM load it (config, tokenizer
and weights at the recipe's revision); datasets are prepared by ``datasets.load_dataset`` with the same id,
configuration and splits as training and evaluation use.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .assets import (
    ASSET_OPTIONS,
    Asset,
    MissingAssetError,
    cached,
    describe,
    on_hub,
    recipe_assets,
)

# Files a model repository may hold that neither transformers nor vLLM load here (other formats, original
# checkpoints such as Llama's original/consolidated.*.pth).
IGNORE_PATTERNS = ["original/*", "*.pth", "*.pt", "*.gguf", "*.onnx", "*.msgpack", "*.h5", "*.ot", "*.tflite"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="trl-drgrpo download",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--config", help="a recipe YAML: its model, training set and in-training benchmarks")
    parser.add_argument("--model", help="a Hub model id (overrides the recipe's model_name_or_path)")
    parser.add_argument("--revision", help="the model's revision (branch, tag or commit)")
    parser.add_argument("--dataset", help="a Hub dataset id (overrides the recipe's dataset_name)")
    parser.add_argument("--dataset_config", help="the dataset's configuration")
    parser.add_argument(
        "--splits", help="comma list of the dataset's splits that must exist (default: train)"
    )
    parser.add_argument(
        "--benchmarks",
        help="comma list of benchmarks, or none (default: the recipe's eval_benchmarks; without --config all five)",
    )
    parser.add_argument(
        "--eval_data", help="a Hub dataset with one split per benchmark, instead of the benchmarks"
    )
    parser.add_argument("--cache_dir", help="an HF_HOME of its own (default: the current Hugging Face cache)")
    parser.add_argument(
        "--dry_run", action="store_true", help="list what would be fetched and what is cached"
    )
    args = parser.parse_args(argv)
    if not (args.config or args.model or args.dataset or args.benchmarks or args.eval_data):
        parser.error(
            "say what to fetch: --config RECIPE, or --model / --dataset / --benchmarks / --eval_data"
        )
    return args


def assets_to_fetch(args: argparse.Namespace) -> list[Asset]:
    """The Hub assets the arguments name (the recipe's, with the command-line values overriding them)."""
    config: dict[str, Any] = {}
    if args.config:
        from .training.preflight import read_config

        config = {k: v for k, v in read_config(args.config).items() if k in ASSET_OPTIONS}
    for key, value in (
        ("model_name_or_path", args.model),
        ("model_revision", args.revision),
        ("dataset_name", args.dataset),
        ("dataset_config", args.dataset_config),
        ("eval_benchmarks", args.benchmarks),
        ("eval_data", args.eval_data),
    ):
        if value is not None:
            config[key] = value
    if not args.config and args.benchmarks is None:
        config["eval_benchmarks"] = "aime,amc,math,minerva,olympiad_bench"  # evaluate's default
    if str(config.get("eval_benchmarks")).strip().lower() == "none":
        config.pop("eval_benchmarks")
    for key in ("model_name_or_path", "dataset_name"):
        if config.get(key) and not on_hub(config[key]):
            print(f"{config[key]} is a local path: nothing to fetch for it", file=sys.stderr)
    assets = recipe_assets(config)
    if args.splits:
        splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
        assets = [replace(a, splits=splits) if a.kind == "dataset" else a for a in assets]
    return assets


def fetch(asset: Asset, cache_dir: str | None = None) -> str:
    """Download ``asset`` into the cache; returns where it is. A dataset is prepared (what offline loading reads)
    and its splits are checked."""
    if asset.kind == "model":
        from huggingface_hub import snapshot_download

        return snapshot_download(
            asset.repo_id,
            revision=asset.revision,
            cache_dir=os.path.join(cache_dir, "hub") if cache_dir else None,
            ignore_patterns=IGNORE_PATTERNS,
        )
    import datasets

    data = datasets.load_dataset(
        asset.repo_id, asset.config, cache_dir=os.path.join(cache_dir, "datasets") if cache_dir else None
    )
    missing = [s for s in asset.splits if s not in data]
    if missing:
        raise ValueError(f"{asset} has no split {', '.join(missing)}; its splits are {', '.join(data)}")
    return f"{', '.join(f'{s} ({len(d)} rows)' for s, d in data.items())}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cache_dir:
        # before the libraries are imported: they read their cache locations then
        os.environ["HF_HOME"] = os.path.abspath(os.path.expanduser(args.cache_dir))
        for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE"):
            os.environ.pop(name, None)
    assets = assets_to_fetch(args)
    if not assets:
        print("nothing to fetch from the Hub (local paths only)")
        return 0
    for asset in assets:
        if args.dry_run:
            print(f"{asset}: {'cached' if cached(asset) else 'to fetch'}")
            continue
        print(f"fetching the {asset} ...", flush=True)
        print(f"  {fetch(asset, os.environ['HF_HOME'] if args.cache_dir else None)}", flush=True)
    if args.dry_run:
        return 0
    missing = [a for a in assets if not cached(a)]
    if missing:
        raise MissingAssetError(
            f"fetched, but {describe(missing)} still not found in the cache as an offline run looks"
        )
    home = f"HF_HOME={os.environ['HF_HOME']} " if args.cache_dir else ""
    print(f"all {len(assets)} in the cache: {home}HF_HUB_OFFLINE=1 runs them without the Hub")
    return 0
