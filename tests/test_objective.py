"""The Dr. GRPO / GRPO objective against values computed by hand."""

import math

import pytest
import torch

from trl_drgrpo.objective import (
    STD_EPS,
    TRL_STD_EPS,
    aggregate_token_losses,
    clipped_surrogate,
    group_advantages,
    k3_kl,
)


def test_drgrpo_advantage_is_reward_minus_group_mean():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    adv = group_advantages(rewards, group_size=4)
    # group 1: mean 0.25 -> [0.75, -0.25, -0.25, -0.25]; group 2: mean 0.75 -> [0.25, 0.25, 0.25, -0.75]
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.25, 0.25, 0.25, -0.75])
    torch.testing.assert_close(adv, expected)


def test_grpo_advantage_divides_by_unbiased_group_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    adv = group_advantages(rewards, group_size=4, std_normalization=True)
    std = math.sqrt((0.75**2 + 3 * 0.25**2) / 3)  # unbiased: sqrt(0.25) = 0.5
    assert std == pytest.approx(0.5)
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25]) / (std + STD_EPS)
    torch.testing.assert_close(adv, expected)


def test_std_epsilon_is_the_papers_and_can_be_set():
    assert STD_EPS == 1e-8  # the paper's code (oat); TRL fixes 1e-4
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.999])  # a tiny spread: the epsilon decides the scale
    paper = group_advantages(rewards, 4, std_normalization=True)
    trl = group_advantages(rewards, 4, std_normalization=True, eps=TRL_STD_EPS)
    std = rewards.std()
    torch.testing.assert_close(paper, (rewards - rewards.mean()) / (std + STD_EPS))
    torch.testing.assert_close(trl, (rewards - rewards.mean()) / (std + TRL_STD_EPS))
    assert paper.abs().max() > 1.1 * trl.abs().max()


def test_difficulty_bias_shows_only_with_std_normalization():
    # An easy question (7/8 right) and a medium one (4/8 right): the single wrong answer of the easy one
    # gets a larger penalty than a wrong answer of the medium one only when dividing by std.
    easy = [1.0] * 7 + [0.0]
    medium = [1.0] * 4 + [0.0] * 4
    rewards = torch.tensor(easy + medium)
    dr = group_advantages(rewards, 8)
    grpo = group_advantages(rewards, 8, std_normalization=True)
    assert dr[7].item() == pytest.approx(-0.875) and dr[15].item() == pytest.approx(-0.5)
    assert abs(grpo[7].item()) > 2 * abs(grpo[15].item())


def test_zero_spread_group_has_zero_advantage_both_ways():
    rewards = torch.ones(4)
    assert group_advantages(rewards, 4).abs().max() == 0
    assert group_advantages(rewards, 4, std_normalization=True).abs().max() == 0


def test_nan_rewards_are_left_out_and_get_zero_advantage():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.0])
    adv = group_advantages(rewards, 4)
    # mean over the three scored rewards = 1/3
    torch.testing.assert_close(adv, torch.tensor([2 / 3, 0.0, -1 / 3, -1 / 3]))


def test_group_advantages_rejects_a_partial_group():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def _losses():
    # two responses: lengths 2 and 4; token losses chosen so the sums are 3 and 8
    per_token = torch.tensor([[1.0, 2.0, 9.0, 9.0], [1.0, 2.0, 2.0, 3.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    return per_token, mask


def test_length_normalized_aggregation_is_mean_of_per_response_means():
    per_token, mask = _losses()
    loss = aggregate_token_losses(per_token, mask, length_normalization=True)
    assert loss.item() == pytest.approx((3 / 2 + 8 / 4) / 2)


def test_constant_normalizer_aggregation_divides_every_response_by_the_budget():
    per_token, mask = _losses()
    loss = aggregate_token_losses(per_token, mask, length_normalization=False, normalizer=10)
    assert loss.item() == pytest.approx((3 / 10 + 8 / 10) / 2)


def test_length_bias_direction():
    # Same negative advantage on every token: GRPO's per-token weight is 1/|o_i|, so a long wrong answer is
    # penalised less per token than a short one; Dr. GRPO weighs every token the same.
    mask = torch.tensor([[1.0, 1.0, 0, 0, 0, 0, 0, 0], [1.0] * 8])
    per_token = torch.ones(2, 8, requires_grad=True)
    aggregate_token_losses(per_token, mask, length_normalization=True).backward()
    grpo_grad = per_token.grad.clone()
    per_token.grad = None
    aggregate_token_losses(per_token, mask, normalizer=8).backward()
    assert grpo_grad[0, 0] == pytest.approx(4 * grpo_grad[1, 0].item())
    assert per_token.grad[0, 0] == per_token.grad[1, 0]


def test_empty_response_counts_as_length_one_and_invalid_normalizer_fails():
    per_token = torch.ones(1, 3)
    mask = torch.zeros(1, 3)
    assert aggregate_token_losses(per_token, mask, length_normalization=True).item() == 0.0
    for bad in (None, 0, -1.0):
        with pytest.raises(ValueError, match="positive constant normalizer"):
            aggregate_token_losses(per_token, mask, normalizer=bad)


def test_clipped_surrogate_hand_values():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    old = torch.zeros(1, 3)
    # A > 0: min(rho*A, clip(rho)*A) -> rho clipped at 1.2 above, kept below
    loss, ratio = clipped_surrogate(logp, old, torch.tensor([2.0]))
    torch.testing.assert_close(ratio, torch.tensor([[1.5, 0.5, 1.1]]))
    torch.testing.assert_close(loss, -torch.tensor([[1.2 * 2, 0.5 * 2, 1.1 * 2]]))
    # A < 0: min picks the more pessimistic value -> rho kept above, clipped at 0.8 below
    loss, _ = clipped_surrogate(logp, old, torch.tensor([-1.0]))
    torch.testing.assert_close(loss, torch.tensor([[1.5, 0.8, 1.1]]))
    # delta caps the unclipped ratio for negative advantages
    loss, _ = clipped_surrogate(logp, old, torch.tensor([-1.0]), delta=1.3)
    torch.testing.assert_close(loss, torch.tensor([[1.3, 0.8, 1.1]]))


def test_clipped_surrogate_gradient_at_ratio_one_is_the_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = clipped_surrogate(logp, logp.detach(), torch.tensor([0.5]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -0.5]]))


def test_k3_kl_is_zero_at_equality_and_positive_otherwise():
    a = torch.tensor([-1.0, -2.0])
    assert k3_kl(a, a).abs().max() == 0
    d = 0.3
    assert k3_kl(torch.tensor([0.0]), torch.tensor([d])).item() == pytest.approx(math.exp(d) - d - 1)


# ---------------------------------------------------------------------------- graded length weight (research option)
def _random_batches(count: int = 50):
    gen = torch.Generator().manual_seed(0)
    for _ in range(count):
        rows, cols = (
            int(torch.randint(1, 70, (1,), generator=gen)),
            int(torch.randint(1, 50, (1,), generator=gen)),
        )
        losses = torch.randn(rows, cols, generator=gen)  # fp32
        mask = (torch.rand(rows, cols, generator=gen) > 0.3).float()
        yield losses, mask, float(torch.randint(1, 64, (1,), generator=gen))


def test_graded_length_weight_is_exactly_the_two_arms_at_alpha_1_and_0():
    """fp32, bit for bit: alpha = 1 is GRPO's aggregation, alpha = 0 Dr. GRPO's (and TRL's grpo / dr_grpo)."""
    for losses, mask, budget in _random_batches():
        grpo = ((losses * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()  # TRL's grpo line
        drgrpo = aggregate_token_losses(losses, mask, False, budget)
        assert torch.equal(
            aggregate_token_losses(losses, mask, normalizer=budget, length_weight_exponent=1), grpo
        )
        assert torch.equal(aggregate_token_losses(losses, mask, True, budget), grpo)
        assert torch.equal(
            aggregate_token_losses(losses, mask, True, budget, length_weight_exponent=0.0), drgrpo
        )


def test_graded_length_weight_interpolates_continuously():
    for losses, mask, budget in _random_batches(10):
        grpo = aggregate_token_losses(losses, mask, True, budget)
        drgrpo = aggregate_token_losses(losses, mask, False, budget)
        near_1 = aggregate_token_losses(losses, mask, normalizer=budget, length_weight_exponent=1 - 1e-7)
        near_0 = aggregate_token_losses(losses, mask, normalizer=budget, length_weight_exponent=1e-7)
        torch.testing.assert_close(near_1, grpo, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(near_0, drgrpo, atol=1e-5, rtol=1e-4)


def test_length_weights_hand_values():
    from trl_drgrpo.objective import length_weights

    weights = length_weights(torch.tensor([4, 16, 64]), 0.5, 16.0)
    # C^(a-1) |o|^-a = 16^-0.5 * |o|^-0.5 = 1/sqrt(16 |o|): 1/8, 1/16, 1/32; the budget's length weighs 1/C
    torch.testing.assert_close(weights, torch.tensor([1 / 8, 1 / 16, 1 / 32], dtype=torch.float64))
    losses = torch.ones(3, 64)
    mask = (torch.arange(64) < torch.tensor([[4], [16], [64]])).float()
    graded = aggregate_token_losses(losses, mask, normalizer=16.0, length_weight_exponent=0.5)
    assert graded.item() == pytest.approx((4 / 8 + 16 / 16 + 64 / 32) / 3)


def test_graded_advantages_give_the_graded_aggregation_on_dr_grpos_path():
    """The trainer's route: advantages x (C/|o|)^a, then Dr. GRPO's 1/C, equals the graded aggregation."""
    from trl_drgrpo.objective import graded_advantages

    gen = torch.Generator().manual_seed(1)
    logps = torch.randn(8, 12, generator=gen, requires_grad=True)
    old = logps.detach() + 0.1 * torch.randn(8, 12, generator=gen)  # ratios off 1, some clipped
    advantages = torch.randn(8, generator=gen)
    mask = (torch.arange(12) < torch.randint(1, 13, (8, 1), generator=gen)).float()
    scaled = graded_advantages(advantages, mask, 0.25, 12.0)
    route, _ = clipped_surrogate(logps, old, scaled)
    spec, _ = clipped_surrogate(logps, old, advantages)
    torch.testing.assert_close(
        aggregate_token_losses(route, mask, False, 12.0),
        aggregate_token_losses(spec, mask, normalizer=12.0, length_weight_exponent=0.25),
    )


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "x", None])
def test_bad_length_weight_exponent_is_a_one_line_error(alpha):
    from trl_drgrpo.objective import check_length_weight_exponent

    with pytest.raises(ValueError, match="length_weight_exponent must be"):
        check_length_weight_exponent(alpha)
