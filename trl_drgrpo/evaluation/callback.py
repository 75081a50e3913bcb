"""Benchmark accuracy during RL training (the paper's learning curves).

``EvaluationCallback`` evaluates the current policy greedily before the first update (step 0), every
``every_n_steps`` optimizer steps and at the end of training, with the trainer's own generation path: the colocated vLLM
engine of a GRPO trainer (``use_vllm=True, vllm_mode="colocate"``, weights synced first), otherwise
the unwrapped model with transformers ``generate``. Problems are sharded over the processes and
gathered, so every rank takes part (DeepSpeed ZeRO-3 included). Metrics go through
``trainer.log`` as ``eval_<benchmark>/accuracy``, ``eval_<benchmark>/mean_response_tokens``,
``eval_<benchmark>/truncated`` and ``eval_average/accuracy``: transformers' trackers (W&B, trackio,
TensorBoard) show them as ``eval/<benchmark>/accuracy`` ... (keys without the ``eval_`` prefix would land under
``train/``). Results are written to ``<output_dir>/eval/step_<N>/`` in the format of
``trl_drgrpo.evaluation.evaluate``. A run stopped by SIGTERM does not evaluate after the signal.

The paper evaluates every 16 *rollouts* (oat's ``--eval_steps 16`` counts rollouts: 16 x 8 = 128 optimizer
steps with its batch shape) and once before training. :func:`eval_interval_steps` turns a cadence in rollouts
into optimizer steps for any batch shape; where responses end is the template's (``endings``), as in training.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..templates import DEFAULT_ENDINGS, Template, get_template
from .backends import TransformersBackend, effective_stops
from .benchmarks import load_benchmark, resolve_benchmarks
from .report import CONFIG_FILE, SAMPLES_FILE, atomic_write_text, write_results
from .scoring import Problem, build_summary, generate_and_grade
from .vllm_backend import VLLMBackend

logger = logging.getLogger(__name__)


def eval_interval_steps(
    every_rollouts: int, gradient_accumulation_steps: int, steps_per_generation: int, num_iterations: int = 1
) -> int:
    """Optimizer steps between two evaluations that are ``every_rollouts`` rollouts apart.

    TRL generates one rollout every ``steps_per_generation * num_iterations`` micro-steps (per-device batches)
    and steps the optimizer every ``gradient_accumulation_steps`` of them.
    """
    for name, value in (
        ("every_rollouts", every_rollouts),
        ("gradient_accumulation_steps", gradient_accumulation_steps),
        ("steps_per_generation", steps_per_generation),
        ("num_iterations", num_iterations),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    micro_steps = every_rollouts * steps_per_generation * num_iterations
    if micro_steps % gradient_accumulation_steps:
        raise ValueError(
            f"{every_rollouts} rollouts ({micro_steps} micro-steps) are not a whole number of optimizer steps of "
            f"{gradient_accumulation_steps} micro-steps; choose eval_every_rollouts accordingly or set eval_every_steps"
        )
    return micro_steps // gradient_accumulation_steps


def interval_from_args(training_args: Any, every_rollouts: int, every_steps: int | None = None) -> int:
    """``every_steps`` if given, else ``every_rollouts`` rollouts in optimizer steps of ``training_args``' batch shape."""
    if every_steps is not None:
        return every_steps
    return eval_interval_steps(
        every_rollouts,
        training_args.gradient_accumulation_steps,
        training_args.steps_per_generation,
        getattr(training_args, "num_iterations", 1),
    )


def evaluation_steps(every_n_steps: int, max_steps: int, eval_at_start: bool = True) -> list[int]:
    """The global steps at which :class:`EvaluationCallback` evaluates a run of ``max_steps`` steps."""
    steps = [0] if eval_at_start else []
    steps += list(range(every_n_steps, max_steps + 1, every_n_steps))
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)  # the end of training
    return steps


class EvaluationCallback(TrainerCallback):
    """Greedy benchmark evaluation of the policy during training.

    Args:
        benchmarks: Comma list or sequence of benchmark names (see ``trl_drgrpo.evaluation.BENCHMARKS``).
        every_n_steps: Evaluate when ``global_step`` is a multiple of this (see :func:`eval_interval_steps`).
        template: Prompt template used for evaluation.
        limit: Only the first ``limit`` problems of each benchmark.
        data: ``None`` (Hub) or a folder / ``DatasetDict`` with one split per benchmark.
        max_tokens: Generation budget per response.
        output_dir: Root of the ``eval/step_<N>`` folders (default: the trainer's ``output_dir``).
        batch_size: Prompts per ``generate`` call on the transformers path.
        eval_at_end: Also evaluate at the end of training (unless the last step was just evaluated).
        eval_at_start: Also evaluate before the first update (step 0; not when resuming), as the paper.
        endings: Where responses end (``trl_drgrpo.templates.ENDINGS``; default: the paper's).
        trainer: The trainer; alternatively call ``bind(trainer)``.
    """

    def __init__(
        self,
        benchmarks: str | Sequence[str],
        every_n_steps: int = 16,
        template: str | Template = "qwen_math",
        limit: int | None = None,
        data: Any = None,
        max_tokens: int = 3000,
        output_dir: str | os.PathLike | None = None,
        *,
        batch_size: int = 8,
        eval_at_end: bool = True,
        eval_at_start: bool = True,
        endings: str = DEFAULT_ENDINGS,
        trainer: Any = None,
        reward: str = "math",
        answer_format: str = "paper",
    ):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.benchmarks = resolve_benchmarks(benchmarks)
        self.template = get_template(template)
        self.endings = self.template.endings(endings).policy  # checks the policy name
        self.every_n_steps = every_n_steps
        self.limit = limit
        self.data = data
        self.max_tokens = max_tokens
        self.output_dir = output_dir
        self.batch_size = batch_size
        self.eval_at_end = eval_at_end
        self.eval_at_start = eval_at_start
        self.trainer = trainer
        self.grading = {"reward": reward, "answer_format": answer_format}
        self.history: list[dict] = []  # metrics of each evaluation, in order
        self._problems: list[Problem] | None = None
        self._last_evaluated_step: int | None = None

    def bind(self, trainer: Any) -> EvaluationCallback:
        """Attach the trainer whose policy is evaluated."""
        self.trainer = trainer
        return self

    # ---- TrainerCallback hooks -------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.eval_at_start and state.global_step == 0:
            self.evaluate_now(0, args, **kwargs)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step > 0 and state.global_step % self.every_n_steps == 0:
            if not self._stopping(state.global_step):
                self.evaluate_now(state.global_step, args, **kwargs)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.eval_at_end and self._last_evaluated_step != state.global_step:
            if not self._stopping(state.global_step):
                self.evaluate_now(state.global_step, args, **kwargs)

    def _stopping(self, step: int) -> bool:
        """Whether the run is stopping on SIGTERM (agreed over the processes): then it saves and exits instead.

        A scheduler's grace period is seconds to minutes; an evaluation of the paper's benchmarks takes far longer,
        and the process would be SIGKILLed before its exit status says "stopped, resumable".
        """
        stop = getattr(self.trainer, "graceful_stop", None)
        if stop is None or not stop.installed:
            return False
        stopping = stop.stopped_at is not None or bool(self.trainer.agree(stop.requested))
        if stopping:
            logger.warning("SIGTERM: no evaluation at step %d (the run saves and stops)", step)
        return stopping

    # ---- evaluation ------------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        """The evaluation problems (loaded once)."""
        if self._problems is None:
            problems = []
            for name in self.benchmarks:
                dataset = load_benchmark(name, self.data)
                count = len(dataset) if self.limit is None else min(self.limit, len(dataset))
                problems += [
                    Problem(name, i, dataset[i]["problem"], dataset[i]["answer"]) for i in range(count)
                ]
            self._problems = problems
        return self._problems

    def evaluate_now(self, step: int, args: TrainingArguments | None = None, **kwargs: Any) -> dict:
        """Evaluate the current policy, write ``eval/step_<step>``, log and return the metrics."""
        trainer = self.trainer
        if trainer is None:
            return self._evaluate_unbound(step, args, **kwargs)
        args = args or trainer.args
        records = self._generate_records(trainer)
        summary = self._summarize(records)
        is_main = trainer.accelerator.is_main_process
        if is_main:
            self._write(step, records, summary, args)
        metrics = self._metrics(summary)
        control = getattr(trainer, "control", None)
        should_log = getattr(control, "should_log", None)
        with _eval_mode(trainer.model):
            # In eval mode, GRPO's log() leaves the pending training metrics for the next training log.
            trainer.log(logged_keys(metrics))
        if control is not None and should_log is not None:
            control.should_log = should_log  # log() clears it; the step's own training log must still happen
        self._last_evaluated_step = step
        self.history.append({"step": step, **metrics})
        return metrics

    def _generate_records(self, trainer: Any) -> list[dict]:
        from accelerate.utils import gather_object

        accelerator = trainer.accelerator
        problems = self.problems()
        if (
            getattr(trainer.args, "use_vllm", False)
            and getattr(trainer.args, "vllm_mode", None) == "colocate"
        ):
            local = self._generate_vllm(trainer, problems)
        else:
            local = self._generate_transformers(trainer, problems)
        gathered = gather_object(local) if accelerator.num_processes > 1 else local
        return _dedupe(gathered, self.benchmarks)

    def _grade_kwargs(self) -> dict:
        return dict(
            n=1,
            temperature=0.0,
            top_p=1.0,
            max_tokens=self.max_tokens,
            seed=0,
            stop=self._stops(),
            **self.grading,
        )

    def _stops(self) -> tuple[str, ...]:
        return effective_stops(self.template, endings=self.endings)

    def _generate_vllm(self, trainer: Any, problems: list[Problem]) -> list[dict]:
        vg = trainer.vllm_generation
        accelerator = trainer.accelerator
        tp = getattr(vg, "tensor_parallel_size", 1)
        # Ranks of one tensor-parallel group share an engine and must submit the same prompts.
        group, groups = accelerator.process_index // tp, accelerator.num_processes // tp
        if trainer.state.global_step != getattr(trainer, "_last_loaded_step", None):
            vg.sync_weights()
            trainer._last_loaded_step = trainer.state.global_step
        sleeping = getattr(vg, "enable_sleep_mode", False)
        if sleeping:
            if getattr(vg, "_llm_weights_sleeping", False):
                vg.sync_weights()  # level-2 sleep discarded the weights; this wakes and re-pushes them
            vg.llm.wake_up(tags=["kv_cache"])
        try:
            backend = VLLMBackend(llm=vg.llm, show_progress=False)
            return generate_and_grade(backend, self.template, problems[group::groups], **self._grade_kwargs())
        finally:
            if sleeping:
                vg.llm.sleep(level=2)
                vg._llm_weights_sleeping = True

    def _generate_transformers(self, trainer: Any, problems: list[Problem]) -> list[dict]:
        from trl.models.utils import unwrap_model_for_generation

        accelerator = trainer.accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        shard = problems[rank::world]
        # Equal shard sizes keep the ranks' generate calls in step (needed by synced_gpus under ZeRO-3).
        per_rank = -(-len(problems) // world)
        if shard and len(shard) < per_rank:
            shard = shard + shard[-1:] * (per_rank - len(shard))
        elif not shard and problems:
            shard = problems[:1] * per_rank
        gather = getattr(trainer.args, "ds3_gather_for_generation", True)
        zero3 = _is_zero3(accelerator)
        dist = getattr(trainer, "_dist", None)  # TRL's DistributedBackend: full FSDP params for generate
        full_params = (
            dist.summon_full_params(trainer.model_wrapped, recurse=False)
            if dist is not None
            else nullcontext()
        )
        with (
            unwrap_model_for_generation(
                trainer.model_wrapped,
                accelerator,
                gather_deepspeed3_params=gather,
                gradient_checkpointing_kwargs=getattr(trainer.args, "gradient_checkpointing_kwargs", None),
            ) as model,
            full_params,
            _eval_mode(trainer.model),
            _eval_mode(model),
        ):
            backend = _SyncedTransformersBackend(
                model,
                trainer.processing_class,
                batch_size=self.batch_size,
                show_progress=False,
                synced_gpus=zero3 and not gather and world > 1,
            )
            return generate_and_grade(backend, self.template, shard, **self._grade_kwargs())

    def _evaluate_unbound(self, step: int, args: TrainingArguments | None, **kwargs: Any) -> dict:
        model, tokenizer = kwargs.get("model"), kwargs.get("processing_class")
        if model is None or tokenizer is None or (args is not None and args.world_size > 1):
            raise RuntimeError(
                "EvaluationCallback needs the trainer: pass trainer=... or call callback.bind(trainer)"
            )
        with _eval_mode(model):
            backend = TransformersBackend(model, tokenizer, batch_size=self.batch_size, show_progress=False)
            records = generate_and_grade(backend, self.template, self.problems(), **self._grade_kwargs())
        summary = self._summarize(records)
        self._write(step, records, summary, args)
        metrics = self._metrics(summary)
        logger.warning("EvaluationCallback is not bound to a trainer; metrics are not logged: %s", metrics)
        self._last_evaluated_step = step
        self.history.append({"step": step, **metrics})
        return metrics

    # ---- results ---------------------------------------------------------------------------

    def _config(self) -> dict:
        name = getattr(getattr(self.trainer, "model", None), "name_or_path", None)
        return {
            "model": name,
            "model_name": Path(str(name)).name if name else None,
            "template": self.template.name,
            "benchmarks": self.benchmarks,
            "data": self.data if isinstance(self.data, (str, os.PathLike)) else None,
            "n": 1,
            "temperature": 0.0,
            "top_p": 1.0,
            "max_tokens": self.max_tokens,
            "limit": self.limit,
            "seed": None,
            "endings": self.endings,
            "stop": list(self._stops()),
        }

    def _summarize(self, records: list[dict]) -> dict:
        return build_summary(records, self.benchmarks, 1, self._config())

    def _write(self, step: int, records: list[dict], summary: dict, args: TrainingArguments | None) -> None:
        root = self.output_dir or (args.output_dir if args is not None else None)
        if root is None:
            return
        out = Path(root) / "eval" / f"step_{step}"
        out.mkdir(parents=True, exist_ok=True)
        summary = {**summary, "step": step, "config": {**summary["config"], "step": step}}
        atomic_write_text(out / CONFIG_FILE, json.dumps(summary["config"], indent=2, sort_keys=True) + "\n")
        atomic_write_text(
            out / SAMPLES_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        )
        write_results(out, summary)

    @staticmethod
    def _metrics(summary: dict) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, m in summary["benchmarks"].items():
            metrics[f"eval/{name}/accuracy"] = m["accuracy"]
            metrics[f"eval/{name}/mean_response_tokens"] = m["mean_response_tokens"]
            metrics[f"eval/{name}/truncated"] = m["truncated"]
        metrics["eval/average/accuracy"] = summary["average"]["accuracy"]
        return metrics


def logged_keys(metrics: dict[str, float]) -> dict[str, float]:
    """``eval/<name>/...`` -> ``eval_<name>/...``: the ``eval_`` prefix is what transformers' trackers map to
    ``eval/`` (any other key gets ``train/`` in front)."""
    return {("eval_" + k[len("eval/") :] if k.startswith("eval/") else k): v for k, v in metrics.items()}


class _SyncedTransformersBackend(TransformersBackend):
    """Transformers backend that forwards ``synced_gpus`` (ZeRO-3 without parameter gathering)."""

    def __init__(self, model: Any, tokenizer: Any, *, synced_gpus: bool, **kwargs: Any):
        super().__init__(model, tokenizer, **kwargs)
        self.synced_gpus = synced_gpus

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed, synced_gpus=False):
        return super().generate(prompts, n, temperature, top_p, max_tokens, stop, seed, self.synced_gpus)


def _dedupe(records: list[dict], order: Sequence[str]) -> list[dict]:
    """Drop duplicate (benchmark, index, sample) records (shard padding, TP groups) and sort them."""
    unique: dict[tuple, dict] = {}
    for r in records:
        unique.setdefault((r["benchmark"], r["index"], r["sample"]), r)
    rank = {name: i for i, name in enumerate(order)}
    return [unique[k] for k in sorted(unique, key=lambda k: (rank.get(k[0], len(rank)), k[1], k[2]))]


def _is_zero3(accelerator: Any) -> bool:
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", None) == 3


@contextmanager
def _eval_mode(model: Any):
    """Put ``model`` in eval mode and restore its previous mode afterwards."""
    if model is None or not hasattr(model, "training"):
        with nullcontext():
            yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()
