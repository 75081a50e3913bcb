"""Crash-safe training: complete-or-absent checkpoints, exact resume from any of them, a clean stop on SIGTERM.

* A checkpoint is written into ``tmp-checkpoint-N/checkpoint-N`` and renamed to ``checkpoint-N`` once every
  process has written its part, so a kill during a save leaves no half-written ``checkpoint-N``.
* :func:`choose_checkpoint` takes the newest checkpoint that is complete and readable, and says which ones it
  skipped (half-written by an older version, truncated or corrupted files).
* Periodic saves land on rollout boundaries; a save inside a rollout (the last step, SIGTERM) also stores the
  rollout being trained, so the resumed run trains on the very completions the uninterrupted run would.
* The question order of epoch ``e`` is a function of (seed, e) (:class:`EpochRepeatSampler`), so a run resumed
  in any epoch draws the rollouts the uninterrupted run would have drawn.
* :func:`install_sigterm_handler`: SIGTERM finishes the current optimizer step, saves a checkpoint and stops.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import struct
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl.trainer.utils import RepeatSampler

logger = logging.getLogger("trl_drgrpo.training.checkpointing")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGING_PREFIX = "tmp-"
ROLLOUT_STATE = "drgrpo_rollout_state_{rank}.pt"
# Test-only fault injection: "save:6,step:7,term:9,raise@1:3"; each point fires once (a marker file in the _DIR folder).
FAULTS_ENV = "TRL_DRGRPO_TEST_FAULTS"
FAULTS_DIR_ENV = "TRL_DRGRPO_TEST_FAULTS_DIR"
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM  # what a process killed by SIGTERM reports; the run is not finished


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (printed as one line by the CLI)."""


class DiskSpaceError(OSError):
    """Too little free disk space for the next checkpoint (raised before anything of it is written)."""


# Free space asked for before a save: the estimated checkpoint size times this (file-system slack, logs).
FREE_SPACE_MARGIN = 1.1


# ---------------------------------------------------------------------------------------------- validation
def _check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated ({size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise CheckpointError(f"{path} is truncated or not a safetensors file")
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise CheckpointError(f"{path} has a corrupted header") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end != size:
        raise CheckpointError(f"{path} is truncated: {size} bytes, its header describes {8 + length + end}")


def _check_torch_file(path: Path) -> None:
    """A ``torch.save`` file is a zip archive: its central directory (at the end) must be readable."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size
            if any(i.header_offset + i.compress_size > size for i in archive.infolist()):
                raise CheckpointError(f"{path} is truncated")
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            if f.read(1) == b"\x80":  # torch's legacy (pickle) format: nothing to check without loading it
                return
        raise CheckpointError(f"{path} is truncated or corrupted (not a readable torch archive)") from None


def _check_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is truncated or corrupted (not valid JSON)") from None


_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def check_checkpoint(folder: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` naming the file when ``folder`` is not a complete, readable checkpoint.

    Checks the trainer state, that model weights are there (whole files, or DeepSpeed/FSDP shards), and the
    structure of every weight, optimizer, scheduler and RNG file (sizes and headers; contents are not read).
    """
    folder = Path(folder)
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        raise CheckpointError(f"{folder} is incomplete: no trainer_state.json (a save that did not finish)")
    state = _check_json(state_file)
    match = CHECKPOINT_RE.match(folder.name)
    if match and state.get("global_step") != int(match.group(1)):
        raise CheckpointError(
            f"{state_file} says global_step {state.get('global_step')}, not {match.group(1)}"
        )
    names = {p.name for p in folder.iterdir()}
    sharded = (folder / "latest").is_file() or any(n.startswith("pytorch_model_fsdp") for n in names)
    if not sharded and not any(n in names for n in _WEIGHTS + _INDEXES):
        raise CheckpointError(f"{folder} is incomplete: no model weights")
    for index in (n for n in _INDEXES if n in names):
        for shard in sorted(set(_check_json(folder / index).get("weight_map", {}).values())):
            if shard not in names:
                raise CheckpointError(f"{folder} is incomplete: {shard} (listed in {index}) is missing")
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            _check_safetensors(path)
        elif path.suffix in (".pt", ".pth", ".bin"):
            _check_torch_file(path)
        elif path.suffix == ".json":
            _check_json(path)


def checkpoint_steps(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-N`` folder in ``output_dir``, newest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found, reverse=True)


def choose_checkpoint(output_dir: str | os.PathLike, requested: str | bool | None = None) -> str | None:
    """The checkpoint to resume from: ``requested`` (checked), else the newest complete one in ``output_dir``.

    Incomplete or corrupted checkpoints are skipped with a warning that names the file; ``None`` when there is
    none to resume from. ``requested`` ``True`` (or ``"true"``) asks for the newest, as transformers' ``train`` does.
    """
    if requested is True or str(requested).lower() == "true":
        requested = None
    if requested:
        try:
            check_checkpoint(requested)
        except CheckpointError as error:
            raise CheckpointError(
                f"cannot resume from {requested}: {error}. Pick another checkpoint, or leave "
                "resume_from_checkpoint unset to take the newest complete one in output_dir"
            ) from None
        return str(requested)
    skipped = []
    for _, folder in checkpoint_steps(output_dir):
        try:
            check_checkpoint(folder)
        except (CheckpointError, OSError) as error:
            skipped.append(folder.name)
            logger.warning("Skipping %s: %s", folder.name, error)
            continue
        if skipped:
            logger.warning("Resuming from %s; skipped %s (delete them to silence this)", folder.name, skipped)
        return str(folder)
    if skipped:
        logger.warning(
            "No complete checkpoint in %s (skipped %s): training starts from the model", output_dir, skipped
        )
    return None


# ---------------------------------------------------------------------------------------------- data order
class EpochRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` whose order in epoch ``e`` depends only on (seed, e).

    TRL's sampler draws one permutation per pass from a generator seeded once, so a fresh sampler (a resumed
    run) replays epoch 0's order in every later epoch. Here ``set_epoch(e)`` (called by the trainer each epoch)
    makes the pass draw the permutation an uninterrupted TRL run would draw in epoch ``e``.
    """

    epoch = 0

    @classmethod
    def like(cls, sampler: RepeatSampler) -> EpochRepeatSampler:
        return cls(
            data_source=sampler.data_source,
            mini_repeat_count=sampler.mini_repeat_count,
            batch_size=sampler.batch_size,
            repeat_count=sampler.repeat_count,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if self.shuffle and self.seed is not None:
            self.generator = torch.Generator()
            self.generator.manual_seed(self.seed)
            for _ in range(self.epoch):  # the permutations of the epochs before
                torch.randperm(self.num_samples, generator=self.generator)
        return super().__iter__()


# ---------------------------------------------------------------------------------------------- faults (tests)
def fault_point(kind: str, step: int) -> None:
    """Test-only: at a point named in ``$TRL_DRGRPO_TEST_FAULTS``, SIGKILL this process, for ``term`` send
    SIGTERM to its process group (run it in a session of its own), for ``raise`` raise a ``RuntimeError``.

    ``kind@R:step`` (e.g. ``term@1:3``) fires on the process of rank ``R`` only (``$RANK``, else ``$LOCAL_RANK``,
    else 0), and its ``term`` signals that process alone: one rank of a multi-process run gets the signal.
    """
    spec = os.environ.get(FAULTS_ENV)
    if not spec:
        return
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    names = {s.strip() for s in spec.split(",")}
    if f"{kind}:{step}" in names:
        point, whole_group = f"{kind}:{step}", kind == "term"
    elif f"{kind}@{rank}:{step}" in names:
        point, whole_group = f"{kind}@{rank}:{step}", False
    else:
        return
    marker = Path(os.environ.get(FAULTS_DIR_ENV, ".")) / f"fired-{point.replace(':', '-')}"
    if marker.exists():
        return
    marker.touch()
    logger.warning("test fault %s fires", point)
    if kind == "raise":  # an error inside one rank's training step (an OOM, a bug)
        raise RuntimeError(f"test fault {point}")
    if whole_group:  # as a scheduler does: the whole process group (grading workers too)
        os.killpg(os.getpgrp(), signal.SIGTERM)
    else:
        os.kill(os.getpid(), signal.SIGTERM if kind == "term" else signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- SIGTERM
class GracefulStop:
    """Set by SIGTERM; read at every optimizer step's end (agreed over all processes)."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None
        self.installed = False

    def handler(self, signum: int, frame: Any) -> None:
        # Repeats are ignored: a launcher (torchrun) forwards the scheduler's SIGTERM to processes that already
        # got it from the scheduler. SIGKILL still ends the run at once (checkpoints are atomic, so that is safe).
        if not self.requested:
            logger.warning(
                "SIGTERM: finishing the current optimizer step, then saving a checkpoint and stopping"
            )
        self.requested = True


def install_sigterm_handler(trainer: Any) -> GracefulStop:
    """SIGTERM makes ``trainer`` finish its optimizer step, save a checkpoint and stop (main thread only)."""
    stop = trainer.graceful_stop
    try:
        signal.signal(signal.SIGTERM, stop.handler)
    except ValueError:  # not the main thread: SIGTERM keeps its default action
        logger.warning("not in the main thread: SIGTERM will stop the run without a checkpoint")
        return stop
    stop.installed = True
    return stop


def stopped_by_signal_message(trainer: Any) -> str | None:
    """The line to print when the run stopped on SIGTERM (``None`` when it was not)."""
    stop = getattr(trainer, "graceful_stop", None)
    if stop is None or stop.stopped_at is None:
        return None
    folder = os.path.join(trainer.args.output_dir, f"checkpoint-{stop.stopped_at}")
    return (
        f"Stopped by SIGTERM after optimizer step {stop.stopped_at}; checkpoint saved to {folder}. "
        "Run the same command again to resume."
    )


def exit_if_stopped(trainer: Any) -> None:
    """After ``trainer.train()``: when SIGTERM stopped the run, say where its checkpoint is and exit with 143."""
    message = stopped_by_signal_message(trainer)
    if message is None:
        return
    if trainer.accelerator.is_main_process:
        print(message, file=sys.stderr, flush=True)
    raise SystemExit(SIGTERM_EXIT_CODE)


# ---------------------------------------------------------------------------------------------- the trainer side
def _saves_between(previous: int, step: int, every: float) -> bool:
    """Whether a multiple of ``every`` lies in ``(previous, step]``."""
    every = max(int(every), 1)
    return step // every > max(previous, 0) // every


class _CrashSafeCallback(TrainerCallback):
    """Moves periodic saves to rollout boundaries; SIGTERM → save and stop; test fault points."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        every = self.trainer.optimizer_steps_per_rollout()
        if args.save_strategy == "steps" and every and state.save_steps and state.save_steps % every:
            logger.info(
                "save_steps=%s is not a multiple of the %d optimizer steps of a rollout: each checkpoint is "
                "written at the first rollout boundary at or after a multiple of save_steps",
                state.save_steps, every,
            )  # fmt: skip

    def on_step_begin(self, args, state, control, **kwargs):
        fault_point("term", state.global_step + 1)
        fault_point("raise", state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        fault_point("step", step)
        trainer = self.trainer
        if control.should_save and not control.should_training_stop and not trainer.at_rollout_boundary():
            control.should_save = False  # saved at the next boundary
        elif not control.should_save and args.save_strategy == "steps" and state.save_steps:
            every = trainer.optimizer_steps_per_rollout()
            if (
                every
                and trainer.at_rollout_boundary()
                and _saves_between(step - every, step, state.save_steps)
            ):
                control.should_save = True
        stop = trainer.graceful_stop
        if stop.installed and trainer.agree(stop.requested):
            stop.stopped_at = step
            control.should_save = True
            control.should_training_stop = True
        return control


class CrashSafeTrainerMixin:
    """Mix into a ``GRPOTrainer`` subclass (before it) for atomic checkpoints and exact resume."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.graceful_stop = GracefulStop()
        self._staging_run_dir: str | None = None
        self.add_callback(_CrashSafeCallback(self))

    # -- rollout bookkeeping
    def _generate_every(self) -> int:
        return self.args.steps_per_generation * self.num_iterations

    def at_rollout_boundary(self) -> bool:
        """Whether the micro-steps done so far end a rollout (its completions are all trained on)."""
        return self._step % self._generate_every() == 0

    def optimizer_steps_per_rollout(self) -> int:
        return max(math.ceil(self._generate_every() / self.args.gradient_accumulation_steps), 1)

    def agree(self, flag: bool) -> bool:
        """``flag`` OR-ed over all processes (so every process stops at the same step)."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(value, reduction="sum").item() > 0)

    def _data_order(self) -> dict:
        return {
            "seed": self.args.seed,
            "num_questions": len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None,
            "generation_batch_size": self.args.generation_batch_size,
            "num_generations": self.num_generations,
            "steps_per_generation": self.args.steps_per_generation,
            "num_iterations": self.num_iterations,
            "shuffle_dataset": self.shuffle_dataset,
        }

    def _get_train_sampler(self, dataset: Any = None):
        sampler = super()._get_train_sampler(dataset)
        if isinstance(sampler, RepeatSampler) and sampler.num_samples < sampler.batch_size:
            raise ValueError(
                f"the training set has {sampler.num_samples} questions but one rollout takes {sampler.batch_size} "
                "(generation_batch_size / num_generations): add questions or make the generation batch smaller"
            )
        return EpochRepeatSampler.like(sampler) if type(sampler) is RepeatSampler else sampler

    # -- saving
    def _get_output_dir(self, trial: Any) -> str:
        return self._staging_run_dir or super()._get_output_dir(trial)

    def estimate_checkpoint_bytes(self, run_dir: str) -> int:
        """The size of the next checkpoint: the newest one in ``run_dir``, else weights + Adam's state."""
        previous = checkpoint_steps(run_dir)
        if previous:
            return folder_bytes(previous[0][1])
        weights = trainable = 0
        for p in self.model.parameters():
            numel = getattr(
                p, "ds_numel", p.numel()
            )  # ZeRO-3 partitions parameters: ds_numel is the full size
            weights += numel * p.element_size()
            trainable += numel if p.requires_grad else 0
        # Adam keeps two fp32 moments per trainable parameter; DeepSpeed also saves an fp32 master copy.
        optimizer = trainable * (12 if self.is_deepspeed_enabled else 8)
        return weights + optimizer

    def check_free_space(self, run_dir: str) -> None:
        """Raise :class:`DiskSpaceError` on every process when ``run_dir`` lacks room for the next checkpoint.

        The new checkpoint is written in full before ``save_total_limit`` removes the oldest one, so the disk
        must hold one checkpoint more than the limit at that moment.
        """
        short: tuple[int, int] | None = None
        if self.args.should_save:
            os.makedirs(run_dir, exist_ok=True)
            need = int(self.estimate_checkpoint_bytes(run_dir) * FREE_SPACE_MARGIN)
            free = shutil.disk_usage(run_dir).free
            if free < need:
                short = (need, free)
        if self.agree(short is not None):
            gib = 2**30
            detail = (
                f"needs about {short[0] / gib:.1f} GiB, {short[1] / gib:.1f} GiB free"
                if short
                else "too little free space (found by the saving process)"
            )
            raise DiskSpaceError(
                f"not saving checkpoint-{self.state.global_step} in {run_dir}: {detail}. A new checkpoint is written "
                f"before the oldest is deleted (save_total_limit={self.args.save_total_limit} keeps that many, so "
                "one more is on disk while saving). Free space, lower save_total_limit or choose another output_dir, "
                "then run the same command again to resume from the last checkpoint."
            )

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        self.check_free_space(run_dir)
        staging_run_dir = os.path.join(run_dir, STAGING_PREFIX + name)
        if self.args.should_save:
            stale = [
                *Path(run_dir).glob(f"{STAGING_PREFIX}checkpoint-*"),
                *Path(run_dir).glob("checkpoint-*.replaced"),
            ]
            for folder in stale:
                shutil.rmtree(folder, ignore_errors=True)  # left by a save that was killed
            os.makedirs(staging_run_dir, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._staging_run_dir = staging_run_dir
        try:
            super()._save_checkpoint(model, trial)
            staged = os.path.join(staging_run_dir, name)
            self._save_rollout_state(staged)
            if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(
                staging_run_dir
            ):
                self.state.best_model_checkpoint = os.path.join(
                    run_dir, Path(self.state.best_model_checkpoint).name
                )
                if self.args.should_save:
                    self.state.save_to_json(os.path.join(staged, "trainer_state.json"))
            fault_point("save", self.state.global_step)
        finally:
            self._staging_run_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            _publish(staged, os.path.join(run_dir, name))
            shutil.rmtree(staging_run_dir, ignore_errors=True)
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def _save_rollout_state(self, folder: str) -> None:
        """This process's part of the state transformers does not save (pending logs, the current rollout)."""
        os.makedirs(folder, exist_ok=True)
        boundary = self.at_rollout_boundary()
        state = {
            "step": self._step,
            "buffered_inputs": None if boundary else self._buffered_inputs,
            "metrics": {mode: {k: list(v) for k, v in m.items()} for mode, m in self._metrics.items()},
            "tr_loss": self._tr_loss.detach().clone().cpu() if hasattr(self, "_tr_loss") else None,
            "globalstep_last_logged": getattr(self, "_globalstep_last_logged", None),
            "data_order": self._data_order(),
        }
        torch.save(state, os.path.join(folder, ROLLOUT_STATE.format(rank=self.accelerator.process_index)))

    # -- resuming
    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)  # called once per resume, right before the first micro-step
        if checkpoint is not None:
            self._load_rollout_state(checkpoint)

    def _load_rollout_state(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, ROLLOUT_STATE.format(rank=self.accelerator.process_index))
        if not os.path.isfile(path):
            if self.state.global_step % self.optimizer_steps_per_rollout():
                logger.warning(
                    "%s lies inside a rollout and holds no rollout state (an older version wrote it): "
                    "the rest of that rollout is regenerated", checkpoint,
                )  # fmt: skip
            return
        try:
            # A multi-process CPU run's device is "cpu:0", which torch.load cannot map to: plain "cpu" is.
            device = self.accelerator.device
            location = "cpu" if device.type == "cpu" else device
            state = torch.load(path, map_location=location, weights_only=False)
        except Exception as error:
            raise CheckpointError(
                f"{path} cannot be read ({type(error).__name__}: {error}); delete {checkpoint} to resume from "
                "the checkpoint before it"
            ) from None
        if state["data_order"] != self._data_order():
            logger.warning(
                "%s was written with another data order or batch shape (%s, now %s): the resumed run does not "
                "draw the rollouts the uninterrupted run would have", checkpoint, state["data_order"],
                self._data_order(),
            )  # fmt: skip
        self._step = state["step"]
        self._buffered_inputs = state["buffered_inputs"]
        for mode, metrics in state["metrics"].items():
            self._metrics[mode].clear()
            self._metrics[mode].update(metrics)
        if state["tr_loss"] is not None:
            self._tr_loss.copy_(state["tr_loss"].to(self._tr_loss.device))
        if state["globalstep_last_logged"] is not None:
            self._globalstep_last_logged = state["globalstep_last_logged"]

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        try:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            raise _unreadable(resume_from_checkpoint, "model weights", error) from None

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        try:
            with _cpu_map_location(self.args):
                super()._load_optimizer_and_scheduler(checkpoint)
        except (OSError, RuntimeError, ValueError, KeyError, EOFError) as error:
            raise _unreadable(checkpoint, "optimizer/scheduler state", error) from None


@contextmanager
def _cpu_map_location(args: Any) -> Iterator[None]:
    """On a multi-process CPU run, let ``torch.load`` map to plain ``"cpu"`` what asks for the run's ``cpu:0``.

    transformers < 5.18 (what vLLM 0.31 installs) loads such a run's optimizer state with
    ``map_location=args.device``, i.e. ``cpu:0``, which torch cannot restore to; later versions pass ``"cpu"``.
    """
    device = getattr(args, "device", None)
    if device is None or device.type != "cpu" or getattr(args, "world_size", 1) <= 1:
        yield
        return
    load = torch.load

    def cpu_load(*a: Any, **kwargs: Any) -> Any:
        location = kwargs.get("map_location")
        if isinstance(location, torch.device) and location.type == "cpu":
            kwargs["map_location"] = "cpu"
        return load(*a, **kwargs)

    torch.load = cpu_load
    try:
        yield
    finally:
        torch.load = load


def _unreadable(checkpoint: str | None, what: str, error: BaseException) -> CheckpointError:
    reason = " ".join(str(error).split())[:300]
    return CheckpointError(
        f"{checkpoint}: cannot load the {what} ({type(error).__name__}: {reason}). The checkpoint is corrupted or "
        f"from another configuration: delete {checkpoint} to resume from the checkpoint before it"
    )


def folder_bytes(folder: str | os.PathLike) -> int:
    """The total size of the files under ``folder``."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def _fsync_tree(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _publish(staged: str, final: str) -> None:
    """Make the whole ``staged`` folder appear as ``final`` in one rename (replacing an older ``final``)."""
    _fsync_tree(staged)
    if os.path.exists(final):
        old = final + ".replaced"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, final)
    fd = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
