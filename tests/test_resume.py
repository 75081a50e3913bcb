"""Checkpoint choice, checkpoint checks, the epoch-seeded data order and the save schedule (fast, no training)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from trl.trainer.utils import RepeatSampler

from trl_drgrpo.training.checkpointing import (
    CheckpointError,
    DiskSpaceError,
    EpochRepeatSampler,
    _publish,
    _saves_between,
    _unreadable,
    check_checkpoint,
    choose_checkpoint,
    fault_point,
)


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, str(folder / "model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.ones(4)}}}, folder / "optimizer.pt")
    torch.save({"cpu": torch.random.get_rng_state()}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_complete_checkpoint_passes(tmp_path):
    check_checkpoint(_checkpoint(tmp_path, 4))


def test_newest_complete_checkpoint_is_chosen_and_skipped_ones_are_named(tmp_path, caplog):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4)
    half_saved = tmp_path / "checkpoint-6"  # what a kill during a save left before: only config.json
    half_saved.mkdir()
    (half_saved / "config.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="trl_drgrpo.training.checkpointing"):
        assert choose_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert "Skipping checkpoint-6" in caplog.text and "no trainer_state.json" in caplog.text
    assert "Resuming from checkpoint-4; skipped ['checkpoint-6']" in caplog.text


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("optimizer.pt", _truncate, "optimizer.pt is truncated or corrupted"),
        ("model.safetensors", _truncate, "model.safetensors is truncated"),
        (
            "rng_state.pth",
            lambda p: p.write_bytes(b"garbage" * 10),
            "rng_state.pth is truncated or corrupted",
        ),
        ("trainer_state.json", lambda p: _truncate(p, 0.7), "trainer_state.json is truncated or corrupted"),
        ("model.safetensors", lambda p: p.unlink(), "no model weights"),
    ],
)
def test_a_corrupted_last_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, name, damage, message):
    _checkpoint(tmp_path, 2)
    damage(_checkpoint(tmp_path, 4) / name)
    with pytest.raises(CheckpointError, match=message):
        check_checkpoint(tmp_path / "checkpoint-4")
    with caplog.at_level(logging.WARNING, logger="trl_drgrpo.training.checkpointing"):
        assert choose_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert message in caplog.text


def test_a_requested_corrupted_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    _truncate(_checkpoint(tmp_path, 4) / "optimizer.pt")
    with pytest.raises(CheckpointError) as error:
        choose_checkpoint(tmp_path, str(tmp_path / "checkpoint-4"))
    text = str(error.value)
    assert "\n" not in text
    assert str(tmp_path / "checkpoint-4" / "optimizer.pt") in text and "Pick another checkpoint" in text


def test_load_failures_name_the_checkpoint_and_what_to_do():
    error = _unreadable(
        "out/checkpoint-8", "optimizer/scheduler state", RuntimeError("PytorchStreamReader failed\nx")
    )
    assert "\n" not in str(error)
    assert "out/checkpoint-8" in str(
        error
    ) and "delete out/checkpoint-8 to resume from the checkpoint before it" in str(error)


def test_no_checkpoint_gives_none(tmp_path, caplog):
    assert choose_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-3").mkdir()
    with caplog.at_level(logging.WARNING, logger="trl_drgrpo.training.checkpointing"):
        assert choose_checkpoint(tmp_path) is None
    assert "No complete checkpoint" in caplog.text


def test_publish_replaces_an_older_folder_of_the_same_name(tmp_path):
    staged = _checkpoint(tmp_path / "tmp-checkpoint-4", 4)
    old = tmp_path / "checkpoint-4"
    old.mkdir()
    (old / "stale.txt").write_text("x")
    _publish(str(staged), str(old))
    assert not (old / "stale.txt").exists() and (old / "trainer_state.json").is_file()
    assert not staged.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-4",
        "tmp-checkpoint-4",
    ]


# ---- data order --------------------------------------------------------------------------------


def _sampler(cls, n=7, seed=3):
    return cls(list(range(n)), mini_repeat_count=2, batch_size=3, repeat_count=2, shuffle=True, seed=seed)


def test_epoch_order_matches_an_uninterrupted_trl_sampler():
    stock = _sampler(RepeatSampler)
    passes = [list(stock) for _ in range(4)]  # TRL: one pass per epoch from one generator
    assert len({tuple(p) for p in passes}) == 4
    for epoch in (3, 0, 2, 1):  # a fresh sampler (a resumed run) in any epoch, in any order
        fresh = _sampler(EpochRepeatSampler)
        fresh.set_epoch(epoch)
        assert list(fresh) == passes[epoch]
    # what a resumed run did before: a fresh TRL sampler replays epoch 0's order
    assert list(_sampler(RepeatSampler)) == passes[0] != passes[2]


def test_unshuffled_sampler_is_unchanged():
    plain = RepeatSampler(list(range(5)), mini_repeat_count=2, batch_size=2, shuffle=False)
    epoch_aware = EpochRepeatSampler.like(plain)
    epoch_aware.set_epoch(3)
    assert list(epoch_aware) == list(plain)


@pytest.mark.parametrize(
    ("previous", "step", "every", "expected"),
    [
        (2, 4, 3, True),
        (4, 6, 3, True),
        (6, 8, 3, False),
        (8, 10, 3, True),
        (48, 56, 50, True),
        (56, 64, 50, False),
    ],
)
def test_saves_move_to_the_first_rollout_boundary_at_or_after_a_multiple(previous, step, every, expected):
    assert _saves_between(previous, step, every) is expected


def test_fault_points_do_nothing_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("TRL_DRGRPO_TEST_FAULTS", raising=False)
    fault_point("save", 4)  # would kill this process otherwise
    monkeypatch.setenv("TRL_DRGRPO_TEST_FAULTS", "save:5")
    monkeypatch.setenv("TRL_DRGRPO_TEST_FAULTS_DIR", str(tmp_path))
    (tmp_path / "fired-save-5").touch()  # already fired once
    fault_point("save", 5)
    fault_point("save", 4)


def test_a_fault_for_one_rank_fires_on_that_rank_only(monkeypatch, tmp_path):
    import os
    import signal

    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(("pid", pid, sig)))
    monkeypatch.setattr(os, "killpg", lambda group, sig: sent.append(("group", group, sig)))
    monkeypatch.setenv("TRL_DRGRPO_TEST_FAULTS", "term@1:3,save@1:4,term:5")
    monkeypatch.setenv("TRL_DRGRPO_TEST_FAULTS_DIR", str(tmp_path))
    monkeypatch.setenv("RANK", "0")
    fault_point("term", 3)
    fault_point("save", 4)
    assert sent == []
    monkeypatch.setenv("RANK", "1")
    fault_point("term", 3)
    fault_point("term", 3)  # once only
    fault_point("save", 4)
    fault_point("term", 5)  # no rank: the whole process group, as before
    me, group = os.getpid(), os.getpgrp()
    assert sent == [
        ("pid", me, signal.SIGTERM),
        ("pid", me, signal.SIGKILL),
        ("group", group, signal.SIGTERM),
    ]


def test_a_raise_fault_raises_on_its_rank_only(monkeypatch, tmp_path):
    monkeypatch.setenv("TRL_DRGRPO_TEST_FAULTS", "raise@1:3")
    monkeypatch.setenv("TRL_DRGRPO_TEST_FAULTS_DIR", str(tmp_path))
    monkeypatch.setenv("RANK", "0")
    fault_point("raise", 3)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match=r"test fault raise@1:3"):
        fault_point("raise", 3)


class _StubTrainer:
    """What the callback reads from the trainer: a rollout every 8 optimizer steps."""

    def __init__(self):
        from trl_drgrpo.training.checkpointing import GracefulStop

        self.step, self.graceful_stop = 0, GracefulStop()

    def at_rollout_boundary(self):
        return self.step % 8 == 0

    def optimizer_steps_per_rollout(self):
        return 8

    def agree(self, flag):
        return flag


def _saved_steps(max_steps: int, save_steps: int, sigterm_at: int | None = None) -> list[int]:
    """Run the callback the way transformers does (DefaultFlowCallback first) and list the steps that save."""
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import DefaultFlowCallback

    from trl_drgrpo.training.checkpointing import _CrashSafeCallback

    args = TrainingArguments(
        output_dir="unused", save_steps=save_steps, max_steps=max_steps, report_to="none"
    )
    state = TrainerState(max_steps=max_steps, save_steps=save_steps)
    trainer = _StubTrainer()
    trainer.graceful_stop.installed = True
    callbacks = [DefaultFlowCallback(), _CrashSafeCallback(trainer)]
    saved = []
    for step in range(1, max_steps + 1):
        control = TrainerControl()
        if step == sigterm_at:
            trainer.graceful_stop.handler(15, None)
        state.global_step = trainer.step = step
        for callback in callbacks:
            control = callback.on_step_end(args, state, control) or control
        if control.should_save:
            saved.append(step)
        if control.should_training_stop:
            break
    return saved


def test_periodic_saves_land_on_rollout_boundaries_and_the_last_step_saves():
    assert _saved_steps(200, 50) == [56, 104, 152, 200]  # the paper's recipes: 50 steps, 8 per rollout
    assert _saved_steps(30, 16) == [16, 30]  # 30 ends inside a rollout: saved with its rollout state
    assert _saved_steps(40, 4) == [8, 16, 24, 32, 40]


def test_sigterm_saves_at_the_end_of_the_current_step_and_stops():
    assert _saved_steps(200, 50, sigterm_at=61) == [56, 61]


def test_legacy_torch_files_are_accepted(tmp_path):
    folder = _checkpoint(tmp_path, 2)
    torch.save({"x": 1}, folder / "scheduler.pt", _use_new_zipfile_serialization=False)
    check_checkpoint(folder)


@pytest.mark.slow
def test_a_checkpoint_that_fails_to_load_names_itself_and_what_to_do(tiny_model_dir, tmp_path):
    """A structurally valid but wrong optimizer file (passes the checks, fails to load): one clear error."""

    def trainer():
        return _fixed_rollout_trainer(tiny_model_dir, tmp_path, max_steps=1)

    trainer().train()
    checkpoint = tmp_path / "checkpoint-1"
    torch.save({"not": "an optimizer state"}, checkpoint / "optimizer.pt")
    check_checkpoint(checkpoint)  # nothing to see in sizes and headers
    with pytest.raises(CheckpointError) as error:
        trainer().train(resume_from_checkpoint=str(checkpoint))
    text = str(error.value)
    assert "\n" not in text and str(checkpoint) in text and "optimizer/scheduler state" in text
    assert f"delete {checkpoint} to resume from the checkpoint before it" in text


@pytest.mark.parametrize("requested", [True, "true", "True"])
def test_resume_from_checkpoint_true_takes_the_newest_complete_one(tmp_path, requested):
    _checkpoint(tmp_path, 2)
    (tmp_path / "checkpoint-3").mkdir()
    assert choose_checkpoint(tmp_path, requested) == str(tmp_path / "checkpoint-2")


@pytest.mark.slow
@pytest.mark.parametrize("short_at", [1, 3])
def test_a_save_without_room_fails_before_writing_anything(tiny_model_dir, tmp_path, monkeypatch, short_at):
    """The free space is checked before a save (estimated from the last checkpoint, or from the parameters and
    Adam's state for the first): a clear error, no half-written checkpoint, the older ones intact."""
    import shutil
    from collections import namedtuple

    from trl_drgrpo.training.checkpointing import folder_bytes

    usage = namedtuple("usage", "total used free")
    checked = []

    def disk_usage(path):
        checked.append(str(path))
        previous = sorted(tmp_path.glob("checkpoint-*"))
        # from step `short_at` on, 1 byte less than the last checkpoint (or than the weights alone, for the first)
        size = (
            folder_bytes(previous[-1]) if previous else 4 * sum(p.numel() for p in trainer.model.parameters())
        )
        free = size - 1 if trainer.state.global_step >= short_at else 10 * size
        return usage(100 * size, 0, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    trainer = _fixed_rollout_trainer(tiny_model_dir, tmp_path, max_steps=3, save_total_limit=1)
    with pytest.raises(
        DiskSpaceError, match=rf"not saving checkpoint-{short_at} in .*GiB free.*save_total_limit=1"
    ):
        trainer.train()
    assert checked, "the free space was not checked"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("checkpoint-", "tmp-")))
    assert left == ([f"checkpoint-{short_at - 1}"] if short_at > 1 else [])
    if left:
        check_checkpoint(tmp_path / left[0])


def _fixed_rollout_trainer(tiny_model_dir, tmp_path, **overrides):
    """A tiny CPU DrGRPOTrainer on TRL's fixed stand-in rollouts, saving every step into ``tmp_path``."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tests.distributed.rollouts import fixed_rollout
    from tests.run_args import cpu_run_args
    from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer

    args = cpu_run_args(DrGRPOConfig, tmp_path, per_device_train_batch_size=4, num_generations=2,
                        max_completion_length=4, save_strategy="steps", save_steps=1,
                        **overrides)  # fmt: skip
    return DrGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=lambda completions, **kw: [float(len(c) % 2) for c in completions],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["1+1=", "2+2=", "3+1=", "4+2="]}),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        rollout_func=fixed_rollout,
    )
