"""Micro-batches cut down to the tokens that carry gradient: pure tensor functions, no trainer state.

TRL's ``GRPOTrainer`` pads a whole generation batch to one width and trains every row of it. Three exact
savings (the trainer decides when each is exact, see ``DrGRPOTrainer``):

* :func:`trim_padding`: drop the prompt columns that are left-padding in every row of a micro-batch and the
  completion columns that are padding in every row (the positions of the kept tokens are unchanged: the
  returned offset is added to the model's position ids);
* :func:`rows_to_train`: leave out rows whose advantage is exactly 0 (their token losses, and gradients, are
  exactly 0 when nothing else is added to the loss), keeping as many rows on every process;
* :func:`group_by_length`: within one optimizer step, put responses of similar length in the same micro-batch
  (a step's gradient is a sum over its micro-batches, so the order does not change it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

#: Per-row tensors whose dim 1 is the prompt (left-padded) or the completion (right-padded).
PROMPT_KEYS = ("prompt_ids", "prompt_mask")
COMPLETION_KEYS = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",  # (B, C) for TRL's token modes, (B, 1) for its sequence modes
    "tool_mask",
    "advantages",  # (B,) in TRL, (B, C) for subclasses with per-token advantages
)
#: Values shared by all rows of a batch (copied as they are).
SHARED_KEYS = ("num_items_in_batch",)
#: Per-row index of the micro-batch TRL would have trained the row in (set by the trainer, ignored by TRL).
SLICE_KEY = "drgrpo_slice"


def unsupported_keys(inputs: dict[str, Any]) -> list[str]:
    """Keys of a TRL micro-batch these functions cannot slice (images, token types, ...): leave such batches alone."""
    known = set(PROMPT_KEYS) | set(COMPLETION_KEYS) | set(SHARED_KEYS) | {SLICE_KEY}
    return sorted(key for key, value in inputs.items() if key not in known and value is not None)


def row_count(inputs: dict[str, Any]) -> int:
    return inputs["completion_ids"].size(0)


def select_rows(inputs: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The micro-batch restricted to ``rows`` (indices, in that order)."""
    return {
        key: value if key in SHARED_KEYS or value is None else value.index_select(0, rows.to(value.device))
        for key, value in inputs.items()
    }


def trim_padding(inputs: dict[str, Any], left: bool = True, right: bool = True) -> tuple[dict[str, Any], int]:
    """Drop all-padding prompt columns (``left``) and completion columns (``right``); return the batch and the
    number of prompt columns dropped (the position offset of what is kept). At least one completion column is
    kept."""
    prompt_mask, completion_mask = inputs["prompt_mask"], inputs["completion_mask"]
    width = completion_mask.size(1)
    used = prompt_mask.bool().any(0).nonzero()
    start = (int(used[0]) if used.numel() else prompt_mask.size(1)) if left else 0
    used = completion_mask.bool().any(0).nonzero()
    end = max(int(used[-1]) + 1 if used.numel() else 0, 1) if right else width
    trimmed = {}
    for key, value in inputs.items():
        if key in PROMPT_KEYS:
            value = value[:, start:]
        elif key in COMPLETION_KEYS and value is not None and value.dim() > 1 and value.size(1) == width:
            value = value[:, :end]
        trimmed[key] = value
    return trimmed, start


def rows_to_train(advantages: torch.Tensor, lengths: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of ``keep`` rows: every row with a non-zero advantage, then the shortest zero-advantage rows.

    ``keep`` (at least the number of non-zero rows, at most all rows) is the same on every process, so all of
    them run the same forward/backward; a zero-advantage row trained as filler adds exactly 0 to the gradient.
    """
    signal = nonzero_rows(advantages)
    if not signal.sum() <= keep <= advantages.size(0):
        raise ValueError(
            f"cannot keep {keep} of {advantages.size(0)} rows, {int(signal.sum())} carry a signal"
        )
    filler = (~signal).nonzero().squeeze(1)
    filler = filler[torch.argsort(lengths[filler], stable=True)][: keep - int(signal.sum())]
    return torch.sort(torch.cat([signal.nonzero().squeeze(1), filler])).values


def nonzero_rows(advantages: torch.Tensor) -> torch.Tensor:
    """One boolean per row: its advantage (any token's, for per-token advantages) is not exactly 0."""
    flat = advantages.reshape(advantages.size(0), -1)
    return (flat != 0).any(1)


def token_count(inputs: dict[str, Any]) -> int:
    """Tokens a forward/backward of this batch runs: rows x (prompt columns + completion columns)."""
    return row_count(inputs) * (inputs["prompt_ids"].size(1) + inputs["completion_ids"].size(1))


def step_keys(start: int, slices: int, iterations: int, accumulation: int) -> list[tuple[int, ...]]:
    """For each of the ``slices`` micro-batches of a generation batch buffered at micro-step ``start``, the
    optimizer steps it is trained in (one per pass); micro-batches with equal keys share every step."""
    cycle = slices * iterations
    first = start - start % cycle
    return [
        tuple((first + it * slices + i) // accumulation for it in range(iterations)) for i in range(slices)
    ]


def group_by_length(batches: Sequence[dict[str, Any]], keys: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of micro-batches with the same key redistributed, longest first, into micro-batches of the same sizes.

    Only rows of micro-batches with equal keys (the same optimizer steps) are exchanged; a micro-batch keeps its
    place in the list and its size. Length: completion tokens, then prompt tokens.
    """
    if len(batches) != len(keys):
        raise ValueError(f"{len(batches)} micro-batches but {len(keys)} step keys")
    out = list(batches)
    for key in dict.fromkeys(keys):
        members = [i for i, k in enumerate(keys) if k == key]
        if len(members) < 2:
            continue
        merged = concat_rows([batches[i] for i in members])
        completion = merged["completion_mask"].sum(1)
        prompt = merged["prompt_mask"].sum(1)
        longest = prompt.max() + 1
        order = torch.argsort(-(completion * longest + prompt), stable=True)
        cursor = 0
        for i in members:
            size = row_count(batches[i])
            out[i] = select_rows(merged, order[cursor : cursor + size])
            cursor += size
    return out


def concat_rows(batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Micro-batches of equal widths stacked along rows (shared values taken from the first)."""
    first = batches[0]
    return {
        key: value if key in SHARED_KEYS or value is None else torch.cat([b[key] for b in batches])
        for key, value in first.items()
    }
