"""``gradient_tokens_only``: TRL's GRPO update computed on the tokens that carry gradient (the trainer's glue).

The pure pieces (trimming, row selection, grouping by length) are in :mod:`trl_drgrpo.training.batching`, the
position checks in :mod:`.positions`, TRL's metrics rebuilt from row counts in :mod:`.token_metrics`; this mixin
decides which savings are exact for the run (once, logged once), applies them to each micro-batch with the same
decision on every process, and logs TRL's metrics over TRL's micro-batches. See docs/gradient-tokens.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers.utils import logging
from trl.models.utils import disable_gradient_checkpointing

from . import batching, token_metrics
from .positions import length_dependent_rope, position_rule
from .randomness import RandomDraws, generators_kept, training_draws

logger = logging.get_logger(__name__)

#: Per-row tag of a buffered micro-batch: the index of the micro-batch TRL would have trained the row in.
SLICE_KEY = batching.SLICE_KEY
#: TRL's metrics appended by ``_compute_loss`` that are rebuilt over TRL's micro-batches (``kl`` only with beta).
REBUILT = (
    "entropy",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "clip_ratio/region_mean",
    "clip_ratio/low_min",
    "clip_ratio/high_max",
)
#: The entropy of the rows with a non-zero advantage (logged instead of TRL's ``entropy`` when rows are left out).
TRAINED_ENTROPY = "drgrpo/trained_entropy"


class GradientTokensMixin:
    """Mixed into ``DrGRPOTrainer`` before ``GRPOTrainer``; ``_init_gradient_tokens_only`` runs after its init."""

    def _init_gradient_tokens_only(self) -> None:
        """Which savings of :mod:`training.batching` are exact here (``gradient_tokens_only``); log why one is off.

        Trimming all-padding columns is exact when the kept tokens keep TRL's positions (checked with a forward at
        the first rollout, :func:`positions.position_rule`) and, for right padding, when no rotary
        frequency depends on the sequence length. Leaving out zero-advantage rows is exact when such a row's loss
        is exactly 0 and the others' do not depend on it; grouping by length, when each row's weight in the
        step's loss does not depend on which micro-batch it is in. All of them, when the training forward draws
        no random numbers or the same for a cut micro-batch (:func:`randomness.training_draws`, same check).
        """
        on = bool(self.args.gradient_tokens_only)
        self._notes: set[str] = set()
        self._trim_batches = on
        self._trim_left = self._trim_right = on
        self._positions: str | None = None  # the model's position rule, checked at the first rollout
        self._draws: RandomDraws | None = None  # its training forward's random draws, checked with them
        rope = length_dependent_rope(self.model)
        if on and rope:
            self._trim_right = False
            self._note(
                f"right padding is not trimmed: rope_type {rope} picks its frequencies from the longest position "
                "of each forward (transformers' dynamic_rope_update); prompt padding is (positions kept)"
            )
        shared = []  # reasons that make a row's loss depend on the other rows of its micro-batch
        if self._entropy_bonus_enabled:
            shared.append("the entropy bonus is a mean over each micro-batch's tokens")
        if self.top_entropy_quantile < 1.0:
            shared.append(
                "top_entropy_quantile < 1 takes its entropy quantile over each micro-batch's tokens"
            )
        if self.aux_loss_enabled:
            shared.append("the MoE router auxiliary loss depends on every row")
        if self.loss_type not in ("dr_grpo", "grpo"):
            shared.append(f"loss_type={self.loss_type!r} is not one of the paper's two aggregations")
        skip_reasons = (
            ["beta != 0: the KL term has a gradient on every row"] if self.beta != 0.0 else []
        ) + shared
        cycle = self.args.steps_per_generation * self.num_iterations
        group_reasons = shared + (
            [f"a generation cycle ({cycle} micro-batches) is not a whole number of optimizer steps"]
            if cycle % self.args.gradient_accumulation_steps
            else []
        )
        self._skip_zero_rows = on and not skip_reasons
        self._group_rows = on and not group_reasons and cycle > 1
        # Rows left out or moved: TRL's per-micro-batch metrics are rebuilt over TRL's micro-batches.
        self._rebuild_metrics = self._skip_zero_rows or self._group_rows
        self._step_rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # (TRL micro-batch id, counts) per row
        self._step_tokens: list[tuple[float, float]] = []  # (trained, TRL's) tokens per micro-batch
        self._captured: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._defer_old_logps = self._deferred = False
        if on and skip_reasons:
            self._note("zero-advantage rows are trained (not exact to leave out): " + "; ".join(skip_reasons))
        if on and group_reasons:
            self._note("micro-batches are not grouped by length (not exact): " + "; ".join(group_reasons))

    def _note(self, message: str) -> None:
        """Log `message` once (per trainer) on the main process."""
        if message not in self._notes:
            self._notes.add(message)
            if self.accelerator.is_main_process:
                logger.warning("gradient_tokens_only: %s", message)

    def _prepare_inputs(self, generation_batch: dict[str, Any]) -> dict[str, Any]:
        """TRL's micro-batch; with a fresh generation batch, rows tagged with their TRL micro-batch and regrouped
        by length within each optimizer step."""
        cycle = self.args.steps_per_generation * self.num_iterations
        fresh = self.model.training and (self._step % cycle == 0 or self._buffered_inputs is None)
        inputs = super()._prepare_inputs(generation_batch)
        if not (fresh and self._trim_batches):
            return inputs
        unsupported = batching.unsupported_keys(inputs)
        if unsupported:
            self._note(f"micro-batches are not grouped by length: cannot reorder {unsupported}")
        else:
            for index, batch in enumerate(self._buffered_inputs):
                rows = batching.row_count(batch)
                batch[SLICE_KEY] = torch.full((rows,), index, device=batch["advantages"].device)
        if self._group_rows and not unsupported:
            keys = batching.step_keys(
                self._step,
                self.args.steps_per_generation,
                self.num_iterations,
                self.args.gradient_accumulation_steps,
            )
            self._buffered_inputs = batching.group_by_length(self._buffered_inputs, keys)
        if "old_per_token_logps" in inputs:  # the same on every process (TRL's settings): collectives pair
            self._old_logps_as_trained()
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    def _old_logps_as_trained(self) -> None:
        """TRL's ``old_per_token_logps`` of the rows and columns each micro-batch will train, recomputed with the
        shapes of that training forward (as TRL's own are computed with its training shapes).

        TRL computes them at generation time, in chunks of ``per_device_train_batch_size`` rows at the generation
        batch's width: the shape of its training forward, so its first pass over a rollout has a ratio of exactly
        1 in any arithmetic. The trimmed forward has other shapes (other kernels, other rounding: in bf16 the
        per-token log-probs differ by up to a few percent); recomputing them with the trimmed batch restores the
        exact 1. Rows left out keep TRL's values (never read); micro-batches trained whole keep TRL's.
        """
        if self._positions is None:
            self._check_model(self.model)
        # With random draws a recomputation would use other numbers than TRL's forward did: keep TRL's values.
        if self._draws != "none":
            return
        slices = self._buffered_inputs
        decisions = self._agree_all(slices)
        checkpointing = disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)
        with torch.no_grad(), checkpointing:  # as TRL's own no-grad forwards
            for index, (batch, (whole, keep)) in enumerate(zip(slices, decisions, strict=True)):
                if whole and not self._deferred:  # trained whole by TRL's path: TRL's values have its shapes
                    continue
                if whole:  # TRL's values were left out on this process (no key it cannot slice here)
                    trained = torch.arange(batching.row_count(batch), device=batch["advantages"].device)
                    part, offset = batch, 0
                else:
                    trained, _ = self._rows_to_train(batch, keep)
                    part, offset = batching.trim_padding(
                        batching.select_rows(batch, trained), left=self._trim_left, right=self._trim_right
                    )
                with position_offset(self.model, offset if self._positions == "arange" else 0):
                    logps = self._training_logps(part)
                old = batch["old_per_token_logps"].clone()
                old[trained.to(old.device), : logps.size(1)] = logps.to(old.dtype)
                slices[index] = {**batch, "old_per_token_logps": old}

    def _training_logps(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per-token log-probs of `batch` computed as TRL's ``_compute_loss`` computes them (one chunk)."""
        completion_ids = batch["completion_ids"]
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.model,
            torch.cat([batch["prompt_ids"], completion_ids], dim=1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
            completion_ids.size(1),
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
        )
        return logps

    def _generate_and_score_completions(self, inputs):
        """TRL's rollout; its full-width ``old_per_token_logps`` forward is left out where only the training reads
        them (then :meth:`_old_logps_as_trained` computes them for the trained rows and columns only)."""
        if self._trim_batches and self.model.training and self._positions is None:
            self._check_model(self.model)
        self._defer_old_logps = (
            self._trim_batches
            and self.model.training
            and self._draws == "none"  # else leaving TRL's forward out would shift the random stream
            and self.beta == 0.0  # the only other forward of self.model here is the reference's
            and not (self.use_vllm and self.vllm_importance_sampling_correction)  # TRL's IS ratio reads them
        )
        self._deferred = False
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._defer_old_logps = False

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
    ):
        extra = [k for k, v in kwargs.items() if v is not None and k not in ("batch_size", "compute_entropy")]
        if self._defer_old_logps and model is self.model and not args and not extra:  # no image inputs
            # Placeholders: _old_logps_as_trained overwrites every value a training forward reads.
            self._defer_old_logps, self._deferred = False, True
            return input_ids.new_zeros(input_ids.size(0), logits_to_keep, dtype=torch.float32), None, None
        out = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )
        if self._captured is not None:
            self._captured.append((out[0], out[1]))
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, in training on the micro-batch cut to the tokens that carry gradient (same loss and gradient)."""
        if not (self._trim_batches and self.model.training) or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self._positions is None:
            self._check_model(model)
        if not self._trim_batches:  # switched off by the check
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        whole, keep = self._agree(inputs)
        if whole:
            keys = batching.unsupported_keys(inputs) or "another process's"
            self._note(f"micro-batches are trained whole (on every process): cannot slice keys {keys}")
            trained, weight = self._rows_to_train(inputs, batching.row_count(inputs))
            batch, offset = inputs, 0
        else:
            trained, weight = self._rows_to_train(inputs, keep)
            batch, offset = batching.trim_padding(
                batching.select_rows(inputs, trained), left=self._trim_left, right=self._trim_right
            )
        self._captured = []
        try:
            with position_offset(model, offset if self._positions == "arange" else 0):
                loss = super().compute_loss(model, batch, return_outputs, num_items_in_batch)
            captured = self._captured
        finally:
            self._captured = None
        if self._rebuild_metrics and len(captured) == 1:  # also for whole ones: one metric name per run
            self._record_rows(inputs, batch, trained, *captured[0])
        self._step_tokens.append((batching.token_count(batch), batching.token_count(inputs)))
        self._end_micro_batch()
        return loss if weight == 1.0 else loss * weight

    def _check_model(self, model: torch.nn.Module) -> None:
        """Once, at the first rollout, on every process (check forwards that leave the random generators as they
        were): the model's position rule decides which columns may be cut, its random draws which savings keep
        TRL's random numbers (logged)."""
        config = getattr(self.model, "config", None)
        config = getattr(config, "text_config", None) or config
        vocab = getattr(config, "vocab_size", None) or self.model.get_input_embeddings().num_embeddings
        device = self.accelerator.device
        with generators_kept(device):
            self._positions = position_rule(model, vocab, device) or "unknown"
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            self._draws = training_draws(model, vocab, device)  # as TRL's no-grad forwards
        if self._draws == "shape":
            self._trim_batches = self._skip_zero_rows = self._group_rows = self._rebuild_metrics = False
            self._note(
                "off: the model's training forward draws random numbers that depend on the batch's shape (dropout; "
                "check forward), so a cut micro-batch would be trained with other random masks than TRL's; "
                "disable_dropout: true makes the savings exact again"
            )
            return
        if self._draws == "same":
            self._group_rows = False
            self._rebuild_metrics = self._skip_zero_rows
            self._note(
                "the model's training forward draws random numbers, the same for a cut micro-batch (check forward): "
                "TRL's old log-probs are kept and micro-batches are not grouped by length (a moved row would get "
                "another micro-batch's draws)"
            )
        if self._positions == "mask":
            self._note(
                "the model takes positions from the attention mask (checked): no position ids are passed"
            )
        elif self._positions == "ignored":
            self._trim_left = False
            self._note(
                "prompt padding is not trimmed: the model ignores the position ids it is given (check forward)"
            )
        elif self._positions == "unknown":
            self._trim_left = self._trim_right = False
            self._note(
                "padding is not trimmed: the model's default positions are neither arange nor cumsum of the "
                "attention mask (check forward), so cut columns could move the kept tokens"
            )

    def _decision(self, inputs: dict[str, Any]) -> list[int]:
        """This process's [whole (cannot slice), rows it needs to train (all, or those with a signal)]."""
        rows = batching.row_count(inputs)
        signal = int(batching.nonzero_rows(inputs["advantages"]).sum()) if self._skip_zero_rows else rows
        return [int(bool(batching.unsupported_keys(inputs))), max(signal, 1)]

    def _agree_all(self, batches: list[dict[str, Any]]) -> list[tuple[bool, int]]:
        """One collective for every process: per micro-batch, train it whole (TRL's path) if any process cannot
        slice its own, else the number of rows each process trains (the largest count with a signal)."""
        local = torch.tensor([self._decision(b) for b in batches], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            local = self.accelerator.gather(local.unsqueeze(0)).amax(0)
        return [
            (bool(whole), min(int(keep), batching.row_count(b)))
            for (whole, keep), b in zip(local.tolist(), batches, strict=True)
        ]

    def _agree(self, inputs: dict[str, Any]) -> tuple[bool, int]:
        return self._agree_all([inputs])[0]

    @staticmethod
    def _rows_to_train(inputs: dict[str, Any], keep: int) -> tuple[torch.Tensor, float]:
        """The rows to run (all rows' signal rows, then the shortest fillers) and the loss weight keep / rows."""
        rows = batching.row_count(inputs)
        if keep >= rows:
            return torch.arange(rows, device=inputs["advantages"].device), 1.0
        lengths = inputs["prompt_mask"].sum(1) + inputs["completion_mask"].sum(1)
        return batching.rows_to_train(inputs["advantages"], lengths, keep), keep / rows

    def _record_rows(
        self,
        inputs: dict[str, Any],
        batch: dict[str, Any],
        trained: torch.Tensor,
        per_token_logps: torch.Tensor,
        entropies: torch.Tensor,
    ) -> None:
        """Replace TRL's metrics of this (trimmed) micro-batch by per-row counts for its TRL micro-batches."""
        metrics = self._metrics["train"]
        for key in REBUILT + (("kl",) if self.beta != 0.0 else ()):
            if metrics.get(key):
                metrics[key].pop()
                if not metrics[key]:
                    del metrics[key]
        level = self.importance_sampling_level
        signal = batching.nonzero_rows(batch["advantages"])
        trained_stats = token_metrics.row_stats(
            per_token_logps,
            entropies,
            batch,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            delta=self.args.delta,
            level=level,
            beta=self.beta,
            bias_correction_kl=bool(self.args.use_bias_correction_kl),
            entropy_rows=signal if self._skip_zero_rows else torch.ones_like(signal),
        )
        stats = token_metrics.untrained_row_stats(inputs, level)
        stats[trained.to(stats.device)] = trained_stats
        spg = self.args.steps_per_generation
        passes = (self._step % (spg * self.num_iterations)) // spg
        tags = inputs.get(SLICE_KEY)
        if tags is None:  # buffered before tagging (resumed): the micro-batch is TRL's own
            tags = torch.full((stats.size(0),), self._step % spg, device=stats.device)
        self._step_rows.append((tags.to(stats.device) + passes * spg, stats))

    def _end_micro_batch(self) -> None:
        """At the end of an optimizer step, one collective: TRL's metrics of its micro-batches of the step, and
        the trained token fraction of each micro-batch."""
        if not self.accelerator.sync_gradients:
            return
        rows, self._step_rows = self._step_rows, []
        tokens, self._step_tokens = self._step_tokens, []
        batches = self.args.steps_per_generation * self.num_iterations
        device = self.accelerator.device
        if rows:
            ids = torch.cat([r[0] for r in rows])
            stats = token_metrics.per_batch(ids, torch.cat([r[1] for r in rows]), batches)
        else:
            stats = torch.zeros(batches, token_metrics.WIDTH, dtype=torch.float64, device=device)
        local = torch.cat(
            [stats.flatten().to(device), torch.tensor(tokens, dtype=torch.float64, device=device).flatten()]
        )
        gathered = local.unsqueeze(0)
        if self.accelerator.num_processes > 1:
            gathered = self.accelerator.gather(gathered)
        size = batches * token_metrics.WIDTH
        merged = token_metrics.merge(gathered[:, :size].view(-1, batches, token_metrics.WIDTH))
        metrics = self._metrics["train"]
        for batch in merged:
            if batch[token_metrics.PRESENT] == 0:
                continue
            values = token_metrics.logged_values(
                batch,
                clip=self.loss_type in ("grpo", "dr_grpo"),
                kl=self.beta != 0.0,
                entropy_name=TRAINED_ENTROPY if self._skip_zero_rows else "entropy",
            )
            for key, value in values.items():
                metrics[key].append(value)
        counts = gathered[:, size:].view(gathered.size(0), -1, 2).sum(0)
        for trained, full in counts.tolist():
            metrics["drgrpo/trained_token_fraction"].append(trained / full)


@contextlib.contextmanager
def position_offset(model: torch.nn.Module, offset: int) -> Iterator[None]:
    """Within the block, `model`'s forward gets position ids starting at `offset` (the left-padding columns cut
    off), so the kept tokens have the positions TRL gives them in the untrimmed batch."""
    if offset == 0:
        yield
        return

    def add_positions(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and kwargs.get("position_ids") is None:
            kwargs["position_ids"] = torch.arange(offset, offset + ids.size(1), device=ids.device).unsqueeze(
                0
            )
        return args, kwargs

    handle = model.register_forward_pre_hook(add_positions, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
