"""``gradient_tokens_only``: TRL's GRPO update computed on the tokens that carry gradient (the trainer's glue).

The pure pieces (trimming, row selection, grouping by length) are in :mod:`trl_drgrpo.training.batching`; this
mixin decides which of them are exact for the run's settings, logs once why one is off, and applies them to each
micro-batch. See docs/gradient-tokens.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers.utils import logging

from . import batching

logger = logging.get_logger(__name__)


class GradientTokensMixin:
    """Mixed into ``DrGRPOTrainer`` before ``GRPOTrainer``; ``_init_gradient_tokens_only`` runs after its init."""

    def _init_gradient_tokens_only(self) -> None:
        """Which savings of :mod:`training.batching` are exact here (``gradient_tokens_only``); log why one is off.

        Trimming all-padding columns is always exact (positions are kept). Leaving out zero-advantage rows is exact
        when such a row's loss is exactly 0 and the others' do not depend on it; grouping by length, when each row's
        weight in the step's loss does not depend on which micro-batch it is in.
        """
        on = bool(self.args.gradient_tokens_only)
        self._notes: set[str] = set()
        self._trim_batches = on
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
        """TRL's micro-batch; with a fresh generation batch, rows regrouped by length within each optimizer step."""
        cycle = self.args.steps_per_generation * self.num_iterations
        fresh = self.model.training and (self._step % cycle == 0 or self._buffered_inputs is None)
        inputs = super()._prepare_inputs(generation_batch)
        if not (fresh and self._trim_batches and self._group_rows):
            return inputs
        unsupported = batching.unsupported_keys(inputs)
        if unsupported:
            self._note(f"micro-batches are not grouped by length: cannot reorder {unsupported}")
            return inputs
        keys = batching.step_keys(
            self._step,
            self.args.steps_per_generation,
            self.num_iterations,
            self.args.gradient_accumulation_steps,
        )
        self._buffered_inputs = batching.group_by_length(self._buffered_inputs, keys)
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, in training on the micro-batch cut to the tokens that carry gradient (same loss and gradient)."""
        if not (self._trim_batches and self.model.training) or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        unsupported = batching.unsupported_keys(inputs)
        if unsupported:
            self._note(f"micro-batches are trained whole: cannot slice {unsupported}")
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        batch, offset, weight = self._gradient_token_batch(inputs)
        with position_offset(model, offset):
            loss = super().compute_loss(model, batch, return_outputs, num_items_in_batch)
        return loss if weight == 1.0 else loss * weight

    def _gradient_token_batch(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], int, float]:
        """The rows and columns to train, the position offset of the kept prompt columns, and the loss weight that
        keeps the full micro-batch's normaliser (TRL's dr_grpo and grpo average over the micro-batch's rows)."""
        rows = batching.row_count(inputs)
        batch, weight = inputs, 1.0
        if self._skip_zero_rows:
            keep = torch.tensor([max(int(batching.nonzero_rows(inputs["advantages"]).sum()), 1)])
            if self.accelerator.num_processes > 1:  # every process trains as many rows (same collectives)
                keep = self.accelerator.gather(keep.to(self.accelerator.device)).max()
            keep = int(keep)
            if keep < rows:
                lengths = inputs["prompt_mask"].sum(1) + inputs["completion_mask"].sum(1)
                batch = batching.select_rows(
                    inputs, batching.rows_to_train(inputs["advantages"], lengths, keep)
                )
                weight = keep / rows
        batch, offset = batching.trim_padding(batch)
        tokens = torch.tensor(
            [batching.token_count(batch), batching.token_count(inputs)],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        if self.accelerator.num_processes > 1:
            tokens = self.accelerator.reduce(tokens, reduction="sum")
        self._metrics["train"]["drgrpo/trained_token_fraction"].append((tokens[0] / tokens[1]).item())
        return batch, offset, weight


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
