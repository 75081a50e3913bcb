"""A stand-in for the ``wandb`` package in the multi-process tests (put this folder first on PYTHONPATH).

It records what transformers' ``WandbCallback`` and TRL send, one JSON line per call, in
``$FAKE_WANDB_DIR/calls-<pid>.jsonl``: ``init``, ``log`` (the keys, and which values are tables) and ``finish``.
Nothing goes over the network.
"""

from __future__ import annotations

import json
import os
from typing import Any

__version__ = "0.0-fake"
run = None


def _record(event: str, **fields: Any) -> None:
    folder = os.environ.get("FAKE_WANDB_DIR")
    if not folder:
        return
    with open(os.path.join(folder, f"calls-{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps({"event": event, **fields}) + "\n")
        f.flush()


class _Config(dict):
    def update(self, values=None, allow_val_change=False, **kwargs):  # noqa: ARG002
        super().update(values or {}, **kwargs)


class _Run:
    id = name = "fake-run"
    url = "about:blank"
    entity = project = "fake"

    def __init__(self) -> None:
        self.summary: dict = {}

    def _label(self, **kwargs: Any) -> None:
        pass

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        pass


class Table:
    def __init__(self, dataframe: Any = None, **kwargs: Any) -> None:
        self.rows = 0 if dataframe is None else len(dataframe)


class Artifact:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_dir(self, *args: Any, **kwargs: Any) -> None:
        pass


config = _Config()
summary: dict = {}


def init(**kwargs: Any) -> _Run:
    global run
    run = _Run()
    _record("init")
    return run


def log(data: dict, *args: Any, **kwargs: Any) -> None:
    _record(
        "log",
        keys=sorted(data),
        tables={k: v.rows for k, v in data.items() if isinstance(v, Table)},
    )


def finish(exit_code: int | None = None, **kwargs: Any) -> None:
    global run
    if run is not None:
        _record("finish", exit_code=exit_code)
    run = None


def define_metric(*args: Any, **kwargs: Any) -> None:
    pass


def watch(*args: Any, **kwargs: Any) -> None:
    pass


def termwarn(*args: Any, **kwargs: Any) -> None:
    pass
