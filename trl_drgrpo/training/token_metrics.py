"""TRL's per-micro-batch training metrics (``entropy``, ``kl``, ``clip_ratio/*``) rebuilt from per-row counts
(pure functions), so that rows left out or moved by ``gradient_tokens_only`` count as in TRL's micro-batch.

TRL 1.16 (``GRPOTrainer._compute_loss``) logs, per micro-batch and over all processes: token means of
``entropy`` and ``kl``; ``clip_ratio/{low,high,region}_mean`` (clipped tokens / tokens, or rows / rows with
sequence-level importance sampling); ``clip_ratio/low_min`` and ``high_max`` (min / max over rows of each row's
clipped share). Here every row of TRL's micro-batch gets one line of counts (:func:`row_stats` for rows run
forward, :func:`untrained_row_stats` for zero-advantage rows left out: never clipped, their tokens still
counted); lines are summed per TRL micro-batch (:func:`per_batch`) and over processes (:func:`merge`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

LOW, HIGH, REGION, COUNT, LOW_FRAC, HIGH_FRAC, ENTROPY, ENTROPY_N, KL, KL_N, PRESENT = range(11)
WIDTH = 11


def _mask(inputs: dict[str, Any]) -> torch.Tensor:
    mask = inputs["completion_mask"]
    return mask * inputs["tool_mask"] if inputs.get("tool_mask") is not None else mask


def _advantages(inputs: dict[str, Any]) -> torch.Tensor:
    advantages = inputs["advantages"]
    return advantages.unsqueeze(1) if advantages.dim() == 1 else advantages


def _clip_columns(out: torch.Tensor, flags: tuple[torch.Tensor, ...], mask: torch.Tensor) -> None:
    """Fill LOW..HIGH_FRAC from (B, T) token flags or (B, 1) row flags, as TRL's two masked means do."""
    low, high, region = (f.double() for f in flags)
    if low.size(1) == 1:
        for column, flag in zip((LOW, HIGH, REGION), (low, high, region), strict=True):
            out[:, column] = flag[:, 0]
        out[:, COUNT] = 1.0
        out[:, LOW_FRAC], out[:, HIGH_FRAC] = low[:, 0], high[:, 0]
        return
    mask = mask.double()
    for column, flag in zip((LOW, HIGH, REGION), (low, high, region), strict=True):
        out[:, column] = (flag * mask).sum(1)
    out[:, COUNT] = mask.sum(1)
    out[:, LOW_FRAC] = out[:, LOW] / out[:, COUNT]  # NaN for an empty row, as in TRL
    out[:, HIGH_FRAC] = out[:, HIGH] / out[:, COUNT]


def row_stats(
    per_token_logps: torch.Tensor,
    entropies: torch.Tensor,
    inputs: dict[str, Any],
    *,
    epsilon_low: float,
    epsilon_high: float,
    delta: float | None,
    level: str,
    beta: float,
    bias_correction_kl: bool,
    entropy_rows: torch.Tensor,
) -> torch.Tensor:
    """(B, WIDTH) counts of the rows run forward, with TRL's definitions; entropy only of ``entropy_rows``."""
    per_token_logps, entropies = per_token_logps.detach(), entropies.detach()
    mask = _mask(inputs)
    old = inputs.get("old_per_token_logps")
    log_ratio = per_token_logps - (per_token_logps if old is None else old)
    if level == "sequence":
        log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef = torch.exp(log_ratio)
    out = torch.zeros(mask.size(0), WIDTH, dtype=torch.float64, device=mask.device)
    if beta != 0.0:
        ref = inputs["ref_per_token_logps"]
        kl = torch.exp(ref - per_token_logps) - (ref - per_token_logps) - 1
        kl = kl * coef if bias_correction_kl else kl
        out[:, KL] = (kl.double() * mask).sum(1)
        out[:, KL_N] = mask.double().sum(1)
    clipped = coef if delta is None else torch.clamp(coef, max=delta)
    advantages = _advantages(inputs)
    low = (clipped < 1 - epsilon_low) & (advantages < 0)
    high = (clipped > 1 + epsilon_high) & (advantages > 0)
    _clip_columns(out, (low, high, low | high), mask)
    weight = mask.double() * entropy_rows.double().unsqueeze(1)
    out[:, ENTROPY] = (entropies.double() * weight).sum(1)
    out[:, ENTROPY_N] = weight.sum(1)
    out[:, PRESENT] = 1.0
    return out


def untrained_row_stats(inputs: dict[str, Any], level: str) -> torch.Tensor:
    """(B, WIDTH) counts of zero-advantage rows not run: no token is clipped (the advantage is 0), every token
    counts in the denominators; entropy and KL unknown (weight 0)."""
    mask = _mask(inputs)
    advantages = _advantages(inputs)
    rows = (mask.size(0), 1 if level == "sequence" and advantages.size(1) == 1 else mask.size(1))
    never = torch.zeros(rows, dtype=torch.bool, device=mask.device)
    out = torch.zeros(mask.size(0), WIDTH, dtype=torch.float64, device=mask.device)
    _clip_columns(out, (never, never, never), mask)
    out[:, PRESENT] = 1.0
    return out


def per_batch(ids: torch.Tensor, stats: torch.Tensor, batches: int) -> torch.Tensor:
    """(batches, WIDTH): the rows' counts summed per TRL micro-batch id (min / max for the row shares; NaN and
    PRESENT 0 for an id without rows)."""
    out = torch.zeros(batches, WIDTH, dtype=torch.float64, device=stats.device)
    out[:, LOW_FRAC] = out[:, HIGH_FRAC] = math.nan
    for i in range(batches):
        rows = stats[ids == i]
        if rows.numel() == 0:
            continue
        out[i] = rows.sum(0)
        out[i, LOW_FRAC] = _nan_reduce(rows[:, LOW_FRAC], torch.min)
        out[i, HIGH_FRAC] = _nan_reduce(rows[:, HIGH_FRAC], torch.max)
    return out


def merge(gathered: torch.Tensor) -> torch.Tensor:
    """(processes, batches, WIDTH) -> (batches, WIDTH): TRL's reduction over processes (sums, min, max)."""
    out = gathered.sum(0)
    for column, reduce in ((LOW_FRAC, torch.min), (HIGH_FRAC, torch.max)):
        for i in range(out.size(0)):
            out[i, column] = _nan_reduce(gathered[:, i, column], reduce)
    return out


def _nan_reduce(values: torch.Tensor, reduce) -> torch.Tensor:
    valid = values[~torch.isnan(values)]
    return reduce(valid) if valid.numel() else values.new_tensor(math.nan)


def logged_values(batch: torch.Tensor, *, clip: bool, kl: bool, entropy_name: str) -> dict[str, float]:
    """TRL's metric values of one micro-batch from its merged counts."""
    values = {entropy_name: (batch[ENTROPY] / batch[ENTROPY_N].clamp(min=1.0)).item()}
    if entropy_name != "entropy" and batch[ENTROPY_N] == 0:
        values[entropy_name] = math.nan  # no row of this micro-batch has a non-zero advantage
    if kl:
        values["kl"] = (batch[KL] / batch[KL_N].clamp(min=1.0)).item()
    if clip:
        count = batch[COUNT].clamp(min=1.0)
        values["clip_ratio/low_mean"] = (batch[LOW] / count).item()
        values["clip_ratio/high_mean"] = (batch[HIGH] / count).item()
        values["clip_ratio/region_mean"] = (batch[REGION] / count).item()
        values["clip_ratio/low_min"] = batch[LOW_FRAC].item()
        values["clip_ratio/high_max"] = batch[HIGH_FRAC].item()
    return values
