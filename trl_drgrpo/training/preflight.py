"""Checks a training run makes before importing anything heavy, so a misconfigured run stops in its first second.

Only the standard library and PyYAML are imported here: ``trl-drgrpo train`` and ``recipes/train.py`` call
:func:`preflight_train` before torch, transformers or TRL are loaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# transformers' report_to names -> the module that must be importable for its callback.
TRACKER_MODULES: dict[str, tuple[str, ...]] = {
    "wandb": ("wandb",),
    "trackio": ("trackio",),
    "tensorboard": ("tensorboard", "tensorboardX"),
    "mlflow": ("mlflow",),
    "comet_ml": ("comet_ml",),
    "clearml": ("clearml",),
    "neptune": ("neptune",),
    "dvclive": ("dvclive",),
    "swanlab": ("swanlab",),
    "codecarbon": ("codecarbon",),
    "dagshub": ("dagshub",),
    "azure_ml": ("azureml",),
    "flyte": ("flytekit",),
    "kubeflow": ("kubeflow",),
}
# Trackers this package ships an extra for: `pip install "trl_drgrpo[<extra>]"`.
TRACKER_EXTRAS = ("wandb", "trackio")
_NO_TRACKER = ("none", "all")


class PreflightError(ValueError):
    """A configuration mistake found before the run loads anything (printed as one line by the CLI)."""


def normalize_report_to(report_to: str | Sequence[str] | None) -> list[str]:
    """``report_to`` as a list of tracker names (``"none"`` and ``None`` give ``[]``)."""
    if report_to is None or report_to is False:  # YAML reads `report_to: no` as False
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [str(n).strip() for n in names if str(n).strip() and str(n).strip() != "none"]


def missing_trackers(report_to: str | Sequence[str] | None) -> list[str]:
    """Names in ``report_to`` whose package cannot be imported (``all`` picks installed ones, so never misses)."""
    missing = []
    for name in normalize_report_to(report_to):
        if name in _NO_TRACKER:
            continue
        modules = TRACKER_MODULES.get(name)
        if modules is None:
            raise PreflightError(
                f"report_to: unknown tracker {name!r}; known: {', '.join(sorted(TRACKER_MODULES))} (or none)"
            )
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            missing.append(name)
    return missing


def check_trackers(report_to: str | Sequence[str] | None) -> None:
    """Raise :class:`PreflightError` with an install hint when a tracker in ``report_to`` is not installed."""
    missing = missing_trackers(report_to)
    if not missing:
        return
    hints = [f'pip install "trl_drgrpo[{m}]"' if m in TRACKER_EXTRAS else f"pip install {m}" for m in missing]
    raise PreflightError(
        f"report_to names {', '.join(missing)}, which is not installed: {'; '.join(hints)}, "
        "or pass --report_to none (or another installed tracker)"
    )


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a recipe YAML file, with one-line errors for a missing or malformed file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PreflightError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise PreflightError(f"config file {path} is not valid YAML{where}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise PreflightError(f"config file {path} must hold a YAML mapping of option: value")
    return config


def option_values(argv: Sequence[str], name: str) -> list[str] | None:
    """The values given to ``--name`` on a command line (last occurrence wins), or ``None`` when absent."""
    flag, values = f"--{name}", None
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == flag:
            values = []
            for value in args[i + 1 :]:
                if value.startswith("--"):
                    break
                values.append(value)
        elif arg.startswith(flag + "="):
            values = [arg[len(flag) + 1 :]]
    return values


def preflight_evaluate(argv: Sequence[str]) -> None:
    """``evaluate``'s early step: with the Hub unreachable it goes offline (``trl_drgrpo.assets``)."""
    from ..assets import BENCHMARKS, evaluation_assets, go_offline_if_unreachable

    if any(a in ("-h", "--help") for a in argv) or option_values(argv, "merge") is not None:
        return
    try:
        config_path = option_values(argv, "config")
        config = read_config(config_path[0]) if config_path else {}
    except PreflightError:  # reported by the command's own parser
        config = {}

    def value(name: str, default: Any = None) -> Any:
        given = option_values(argv, name)
        return given[0] if given else config.get(name, default)

    benchmarks = value("benchmarks", ",".join(BENCHMARKS))
    try:
        go_offline_if_unreachable(
            evaluation_assets(value("model"), benchmarks, value("data"), value("revision"))
        )
    except ValueError:  # an unknown benchmark: reported by the command itself
        pass


def preflight_train(argv: Sequence[str]) -> None:
    """Fast checks of a training command line: the recipe file is readable, its trackers are installed, and offline
    (or with the Hub unreachable) what it loads from the Hub is in the cache (``trl_drgrpo.assets``)."""
    config: dict[str, Any] = {}
    config_path = option_values(argv, "config")
    if config_path is not None:
        if len(config_path) != 1:
            raise PreflightError("--config takes one YAML file")
        config = read_config(config_path[0])
    report_to = option_values(argv, "report_to")
    if report_to is None:
        report_to = config.get("report_to")
    check_trackers(report_to)
    from ..assets import (
        ASSET_OPTIONS,
        check_offline,
        go_offline_if_unreachable,
        local_path_missing,
        recipe_assets,
    )

    for name in ASSET_OPTIONS:  # the command line overrides the recipe
        given = option_values(argv, name)
        if given:
            config[name] = given[0]
    assets = recipe_assets(config)
    go_offline_if_unreachable(assets)
    if not local_path_missing(*(config.get(k) for k in ("model_name_or_path", "dataset_name", "eval_data"))):
        check_offline(
            assets, "trl-drgrpo train"
        )  # offline: what is not cached, in one line, before the imports
