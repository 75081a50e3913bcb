"""finish_trackers: the W&B / trackio runs of a process that leaves through os._exit (fast, fake modules)."""

from __future__ import annotations

import sys
import types

from trl_drgrpo.training.outputs import finish_trackers


def _fake_wandb(calls: list) -> types.ModuleType:
    wandb = types.ModuleType("wandb")
    wandb.run = object()

    def finish(exit_code=None):
        calls.append(("wandb", exit_code))
        wandb.run = None

    wandb.finish = finish
    return wandb


def test_an_open_wandb_run_is_finished_with_the_exit_code(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(calls))
    monkeypatch.delitem(sys.modules, "trackio", raising=False)
    assert finish_trackers(143) == ["wandb"]
    assert calls == [("wandb", 143)]
    assert finish_trackers(0) == [] and calls == [("wandb", 143)]  # no run left: nothing to finish


def test_trackers_never_imported_or_failing_are_left_alone(monkeypatch):
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    trackio = types.ModuleType("trackio")

    def finish():
        raise RuntimeError("Call trackio.init() before trackio.finish().")

    trackio.finish = finish
    monkeypatch.setitem(sys.modules, "trackio", trackio)
    assert finish_trackers(1) == []
