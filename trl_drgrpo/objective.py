"""The policy objective of GRPO and Dr. GRPO as pure tensor functions.

For a question q with G sampled responses o_1..o_G and rewards r_1..r_G, GRPO maximises

    1/G sum_i 1/|o_i| sum_t min(rho_it * A_i, clip(rho_it, 1-eps, 1+eps) * A_i),
    A_i = (r_i - mean(r)) / std(r).

Dr. GRPO (Liu et al., 2025, Section 3.3) removes the two biases:

* length bias:     1/|o_i|  ->  1/C   (one constant C, the generation budget),
* difficulty bias: / std(r) ->  removed, so A_i = r_i - mean(r).

Both are switches here, so the paper's 2x2 ablation is four settings of two booleans. A research option grades
the length term (:func:`length_weights`): token weight ``C^(alpha-1) |o_i|^-alpha``, alpha = 1 GRPO, alpha = 0
Dr. GRPO.

This module is the specification. ``DrGRPOTrainer`` runs TRL's own loss code for the same quantities
(``loss_type="dr_grpo"`` divides by ``B * max_completion_length``, as :func:`aggregate_token_losses` does with
the budget as ``normalizer``); ``tests/test_trainer_equivalence.py`` holds the trainer to these functions on
fixed batches, computed without TRL.
"""

from __future__ import annotations

import torch

#: Added to std(r) before dividing (GRPO only): the paper's code (oat) uses 1e-8. TRL fixes 1e-4 (``TRL_STD_EPS``).
STD_EPS = 1e-8
TRL_STD_EPS = 1e-4


def group_advantages(
    rewards: torch.Tensor, group_size: int, std_normalization: bool = False, eps: float = STD_EPS
) -> torch.Tensor:
    """Per-response advantages from rewards laid out as consecutive groups of ``group_size``.

    Dr. GRPO:  A_i = r_i - mean(r_group)
    GRPO:      A_i = (r_i - mean(r_group)) / (std(r_group) + eps)   (``std_normalization=True``)

    ``std`` is the unbiased (n-1) sample standard deviation, as in TRL. NaN rewards (a completion no
    reward function could score) are left out of the group statistics and get advantage 0.
    """
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards cannot be split into groups of {group_size}")
    grouped = rewards.reshape(-1, group_size)
    advantages = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    if std_normalization:
        advantages = advantages / (_nanstd(grouped) + eps)
    return torch.nan_to_num(advantages, nan=0.0).reshape(rewards.shape)


def aggregate_token_losses(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    length_normalization: bool = False,
    normalizer: float | None = None,
    length_weight_exponent: float | None = None,
) -> torch.Tensor:
    """Reduce a (B, T) matrix of token losses to the scalar loss, averaged over the B responses.

    GRPO:      L = 1/B sum_i (sum_t l_it m_it) / |o_i|    (``length_normalization=True``)
    Dr. GRPO:  L = 1/B sum_i (sum_t l_it m_it) / C        (C = ``normalizer``, the generation budget)
    graded:    L = 1/B sum_i (sum_t l_it m_it) / (|o_i|^a C^(1-a))   (a = ``length_weight_exponent``)

    ``|o_i| = sum_t m_it`` (clamped to 1 for an empty response). a = 1 and a = 0 are computed as the two lines
    above (the same reduction order as TRL's ``grpo`` and ``dr_grpo``, so the same bits); the graded line is
    their continuous interpolation (``length_weights``). ``length_weight_exponent`` overrides
    ``length_normalization``.
    """
    token_sums = (per_token_loss * mask).sum(dim=-1)
    if length_weight_exponent is not None:
        alpha = check_length_weight_exponent(length_weight_exponent)
        if alpha not in (0.0, 1.0):
            _check_normalizer(normalizer)
            lengths = mask.sum(dim=-1).clamp(min=1.0)
            return (token_sums / (lengths**alpha * normalizer ** (1.0 - alpha))).mean()
        length_normalization = alpha == 1.0
    if length_normalization:
        return (token_sums / mask.sum(dim=-1).clamp(min=1.0)).mean()
    _check_normalizer(normalizer)
    return token_sums.sum() / (token_sums.numel() * normalizer)


def length_weights(lengths: torch.Tensor, alpha: float, normalizer: float) -> torch.Tensor:
    """Per-token weight of each response under the graded length term: ``w_i = C^(alpha-1) |o_i|^-alpha``.

    alpha = 1: ``1/|o_i|`` (GRPO); alpha = 0: ``1/C`` (Dr. GRPO). The normaliser ``C^(alpha-1)`` keeps the
    update's scale between the two arms': a response of length C weighs ``1/C`` at every alpha, and
    ``w_i = (1/C) (C/|o_i|)^alpha`` moves geometrically from Dr. GRPO's weight to GRPO's.
    """
    alpha = check_length_weight_exponent(alpha)
    _check_normalizer(normalizer)
    return (normalizer / lengths.clamp(min=1).to(torch.float64)) ** alpha / normalizer


def graded_advantages(
    advantages: torch.Tensor, mask: torch.Tensor, alpha: float, normalizer: float
) -> torch.Tensor:
    """Advantages times ``(C/|o_i|)^alpha``, so that Dr. GRPO's ``1/C`` aggregation gives each token the graded
    weight of :func:`length_weights` (the clipped surrogate is linear in a positive scale of A; the trainer's
    graded loss). ``advantages`` has shape (B,) or (B, T); ``|o_i| = sum_t m_it``."""
    scale = (length_weights(mask.sum(dim=-1), alpha, normalizer) * normalizer).to(advantages.dtype)
    return advantages * (scale if advantages.dim() == 1 else scale.unsqueeze(1))


def check_length_weight_exponent(alpha: float) -> float:
    """``alpha`` as a float in [0, 1], or a one-line ValueError."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"length_weight_exponent must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(
            f"length_weight_exponent must be in [0, 1] (1 = GRPO's 1/|o|, 0 = Dr. GRPO's 1/C), got {alpha!r}"
        )
    return value


def _check_normalizer(normalizer: float | None) -> None:
    if normalizer is None or normalizer <= 0:
        raise ValueError(
            f"Dr. GRPO needs a positive constant normalizer (the generation budget), got {normalizer}"
        )


def clipped_surrogate(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    delta: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped token loss ``-min(rho * A, clip(rho, 1-eps_low, 1+eps_high) * A)`` and the ratio rho.

    ``advantages`` has shape (B,) or (B, T); ``delta`` optionally caps the unclipped ratio (two-sided clipping).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(per_token_logps - old_per_token_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    unclipped = ratio if delta is None else torch.clamp(ratio, max=delta)
    return -torch.min(unclipped * advantages, clipped * advantages), ratio


def k3_kl(per_token_logps: torch.Tensor, ref_per_token_logps: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || pi_ref) per token: exp(d) - d - 1 with d = log pi_ref - log pi."""
    diff = ref_per_token_logps - per_token_logps
    return torch.exp(diff) - diff - 1


def _nanstd(grouped: torch.Tensor) -> torch.Tensor:
    """Unbiased standard deviation over dim 1 ignoring NaNs (keepdim)."""
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    count = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    sq = torch.nansum((grouped - mean) ** 2, dim=1, keepdim=True)
    return torch.sqrt(sq / (count - 1).clamp(min=1))
