"""DrGRPOTrainer on fixed batches: against ``objective.py`` (the specification, computed here without TRL) and
against TRL's own GRPOTrainer on the same model, alone and with TRL's loss features switched on.

For each (length_normalization, std_normalization) setting, TRL's (loss_type, scale_rewards) that means the
same thing must give the same advantages, loss and gradients. The completions come from a fixed
``rollout_func``, so neither trainer samples anything.

Legitimate differences, switched off here and tested separately:
- ``truncated_completion_reward`` (Dr. GRPO gives a truncated response 0 from an answer-checking reward, and the
  reward here declares itself one; TRL has no such option), so it is set to ``None`` for the comparison;
- the std epsilon (the paper's 1e-8, TRL's fixed 1e-4), so ``std_eps`` is set to TRL's value.
"""

from __future__ import annotations

import copy
import itertools
import random

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer
from trl_drgrpo.objective import (
    TRL_STD_EPS,
    aggregate_token_losses,
    clipped_surrogate,
    group_advantages,
)

MAX_LEN = 12
GROUP = 4
QUESTIONS = ["1+1=", "2+3=", "7-4="]


def fixed_rollout(prompts: list[str], trainer) -> dict:
    """Deterministic completions of varied lengths: some end with EOS, some run to the budget (truncated)."""
    tok = trainer.processing_class
    rng = random.Random(0)
    prompt_ids, completion_ids = [], []
    for prompt in prompts:
        prompt_ids.append(tok(prompt)["input_ids"])
        length = rng.choice([2, 3, 5, 8, MAX_LEN])
        ids = [rng.randrange(3, 200) for _ in range(length)]
        if length < MAX_LEN:
            ids[-1] = tok.eos_token_id
        completion_ids.append(ids)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def length_parity_reward(completions, **kwargs) -> list[float]:
    """A reward with different spreads per group (so std normalization matters)."""
    return [float(len(c) % 3 == 0) + 0.5 * float(len(c) % 2) for c in completions]


length_parity_reward.answer_reward = True  # scored like MathReward: "auto" gives a truncated response 0


def answer_one(completions, **kwargs) -> list[float]:
    return [1.0] * len(completions)


answer_one.answer_reward = True


def _common_args(tmp_path) -> dict:
    return dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=GROUP * len(QUESTIONS),
        num_generations=GROUP,
        max_completion_length=MAX_LEN,
        beta=0.0,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        seed=0,
    )


def _loss_and_grads(trainer, inputs: list[dict], return_batch: bool = False, off_policy: bool = False):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(inputs)
    if off_policy:  # a behaviour policy that differs from the current one, so ratios and clipping matter
        noise = torch.randn(batch["completion_ids"].shape, generator=torch.Generator().manual_seed(1))
        batch["old_per_token_logps"] = _logps(trainer.model, batch).detach() + 0.3 * noise
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    if return_batch:
        return batch, loss.detach(), grads
    return batch["advantages"], loss.detach(), grads


def _inputs() -> list[dict]:
    return [{"prompt": q} for q in QUESTIONS for _ in range(GROUP)]


def _trainer(cls, model_and_tokenizer, args, reward=length_parity_reward):
    """A trainer on a fresh copy of the model, fed by the fixed rollout."""
    model, tok = model_and_tokenizer
    return cls(
        model=copy.deepcopy(model),
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": QUESTIONS}),
        processing_class=tok,
        rollout_func=fixed_rollout,
    )


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize(
    ("length_normalization", "std_normalization"), list(itertools.product([False, True], [False, True]))
)
def test_loss_and_gradients_match_trl(tmp_path, model_and_tokenizer, length_normalization, std_normalization):
    inputs = [{"prompt": q} for q in QUESTIONS for _ in range(GROUP)]

    trl_args = GRPOConfig(
        loss_type="grpo" if length_normalization else "dr_grpo",
        scale_rewards="group" if std_normalization else "none",
        **_common_args(tmp_path / "trl"),
    )
    ours_args = DrGRPOConfig(
        length_normalization=length_normalization,
        std_normalization=std_normalization,
        truncated_completion_reward=None,
        std_eps=TRL_STD_EPS,
        **_common_args(tmp_path / "ours"),
    )
    results = [
        _loss_and_grads(_trainer(cls, model_and_tokenizer, args), inputs)
        for cls, args in ((GRPOTrainer, trl_args), (DrGRPOTrainer, ours_args))
    ]
    (adv_trl, loss_trl, grads_trl), (adv_ours, loss_ours, grads_ours) = results

    assert adv_ours.abs().sum() > 0, "the batch must carry a learning signal"
    torch.testing.assert_close(adv_ours, adv_trl, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss_ours, loss_trl, atol=1e-6, rtol=0)
    assert grads_ours.keys() == grads_trl.keys() and grads_ours
    for name in grads_trl:
        torch.testing.assert_close(grads_ours[name], grads_trl[name], atol=1e-6, rtol=0, msg=name)


def test_switches_change_the_loss(tmp_path, model_and_tokenizer):
    """The four settings are really different objectives on this batch (so the test above can fail)."""
    inputs = [{"prompt": q} for q in QUESTIONS for _ in range(GROUP)]
    losses = []
    for length_norm, std_norm in itertools.product([False, True], [False, True]):
        args = DrGRPOConfig(
            length_normalization=length_norm,
            std_normalization=std_norm,
            truncated_completion_reward=None,
            **_common_args(tmp_path / f"{length_norm}{std_norm}"),
        )
        _, _, grads = _loss_and_grads(_trainer(DrGRPOTrainer, model_and_tokenizer, args), inputs)
        losses.append(sum(g.abs().sum().item() for g in grads.values()))
    assert len({round(x, 9) for x in losses}) == 4


def test_truncated_completions_get_the_truncation_reward(tmp_path, model_and_tokenizer):
    """A response that runs to the budget without EOS scores `truncated_completion_reward` (0 by default)."""
    trainer = _trainer(DrGRPOTrainer, model_and_tokenizer, DrGRPOConfig(**_common_args(tmp_path)), answer_one)
    inputs = [{"prompt": q} for q in QUESTIONS for _ in range(GROUP)]
    trainer.model.train()
    batch = trainer._generate_and_score_completions(inputs)
    rewards_per_func, truncated, lengths = trainer._rollout
    assert truncated.any() and (~truncated).any()
    assert torch.equal(truncated, lengths == MAX_LEN)
    assert torch.all(rewards_per_func[truncated] == 0.0) and torch.all(rewards_per_func[~truncated] == 1.0)
    # Truncated responses are below their group's mean, so they get negative advantages.
    assert torch.all(batch["advantages"][truncated] < 0)
    metrics = trainer._metrics["train"]
    assert metrics["drgrpo/truncated_fraction"][-1] == pytest.approx(truncated.float().mean().item())
    assert metrics["drgrpo/correct_mean_length"][-1] == pytest.approx(
        lengths[~truncated].float().mean().item()
    )
    assert metrics["drgrpo/incorrect_mean_length"][-1] == pytest.approx(float(MAX_LEN))


# ---------------------------------------------------------------------------- against objective.py, without TRL
def _logps(model, batch, temperature: float = 1.0) -> torch.Tensor:
    """log pi(o_t | q, o_<t) of each completion token, by a plain forward pass."""
    ids = batch["completion_ids"]
    input_ids = torch.cat([batch["prompt_ids"], ids], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, -ids.size(1) - 1 : -1]
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _spec_loss(model, tokenizer, batch, args: DrGRPOConfig):
    """The loss objective.py defines for this batch: rewards, truncation reward, advantages, aggregation."""
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    texts = [
        tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(ids, mask, strict=True)
    ]
    rewards = torch.tensor(length_parity_reward(texts))
    truncated = (mask.sum(1) == MAX_LEN) & (ids[:, MAX_LEN - 1] != tokenizer.eos_token_id)
    assert truncated.any() and (~truncated).any()
    setting = args.truncated_completion_reward  # "auto": 0, since length_parity_reward checks "answers"
    rewards[truncated] = 0.0 if setting == "auto" else setting
    advantages = group_advantages(rewards, GROUP, args.std_normalization, eps=args.std_eps)
    logps = _logps(model, batch, args.temperature)
    per_token, _ = clipped_surrogate(logps, logps.detach(), advantages, args.epsilon, args.epsilon)
    return advantages, aggregate_token_losses(
        per_token, mask, args.length_normalization, args.loss_normalizer, args.length_weight_exponent
    )


@pytest.mark.parametrize(
    ("length_normalization", "std_normalization", "extra"),
    [
        (False, False, {}),
        (True, False, {}),
        (False, True, {}),  # the paper's std epsilon, 1e-8
        (True, True, {"std_eps": 0.25}),  # an epsilon large enough to matter
        (False, False, {"loss_normalizer": 40.0}),  # a constant other than the budget
        (False, False, {"length_weight_exponent": 0.5}),  # the graded length term
        (False, True, {"length_weight_exponent": 0.25, "loss_normalizer": 40.0}),
    ],
)
def test_trainer_follows_the_objective_spec(
    tmp_path, model_and_tokenizer, length_normalization, std_normalization, extra
):
    args = DrGRPOConfig(
        length_normalization=length_normalization,
        std_normalization=std_normalization,
        **extra,
        **_common_args(tmp_path),
    )
    assert args.truncated_completion_reward == "auto"  # the paper's rule is part of what is checked
    trainer = _trainer(DrGRPOTrainer, model_and_tokenizer, args)
    batch, loss, grads = _loss_and_grads(trainer, _inputs(), return_batch=True)

    reference = copy.deepcopy(model_and_tokenizer[0]).train()
    advantages, spec_loss = _spec_loss(reference, model_and_tokenizer[1], batch, args)
    spec_loss.backward()
    assert advantages.abs().sum() > 0
    torch.testing.assert_close(batch["advantages"], advantages, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss, spec_loss.detach(), atol=1e-6, rtol=1e-5)
    spec_grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert spec_grads.keys() == grads.keys()
    for name, grad in spec_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_loss_normalizer_scales_the_dr_grpo_loss(tmp_path, model_and_tokenizer):
    """Dr. GRPO's loss is inversely proportional to its constant (the budget unless set)."""
    losses = []
    for normalizer in (None, 3.0 * MAX_LEN):
        args = DrGRPOConfig(loss_normalizer=normalizer, **_common_args(tmp_path / str(normalizer)))
        losses.append(_loss_and_grads(_trainer(DrGRPOTrainer, model_and_tokenizer, args), _inputs())[1])
    assert losses[0].abs() > 0
    torch.testing.assert_close(losses[1] * 3.0, losses[0])


# ---------------------------------------------------------------------------- TRL's features compose
FEATURES = {
    "entropy_bonus": {"entropy_coef": 0.05},
    "adaptive_entropy": {"use_adaptive_entropy": True, "entropy_target": 100.0},
    "entropy_mask": {"top_entropy_quantile": 0.5},
    "off_policy_mask": {"off_policy_mask_threshold": -1.0},  # drops every negative-advantage response
    "sequence_importance_sampling": {"importance_sampling_level": "sequence"},
    "normalize_then_sum": {"multi_objective_aggregation": "normalize_then_sum"},
    "two_sided_clipping": {"delta": 1.5, "epsilon_high": 0.28},
    "kl": {"beta": 0.1},
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_trl_features_compose_with_dr_grpo(tmp_path, model_and_tokenizer, feature):
    """With a TRL feature on, DrGRPOTrainer is TRL's `dr_grpo` loss: same advantages, loss, gradients, metrics."""
    options = FEATURES[feature]
    trl_args = GRPOConfig(
        loss_type="dr_grpo", scale_rewards="none", **{**_common_args(tmp_path / "trl"), **options}
    )
    ours_args = DrGRPOConfig(
        truncated_completion_reward=None, **{**_common_args(tmp_path / "ours"), **options}
    )
    trainers = [
        _trainer(cls, model_and_tokenizer, a)
        for cls, a in ((GRPOTrainer, trl_args), (DrGRPOTrainer, ours_args))
    ]
    (adv_trl, loss_trl, grads_trl), (adv_ours, loss_ours, grads_ours) = [
        _loss_and_grads(t, _inputs(), off_policy=True) for t in trainers
    ]

    torch.testing.assert_close(adv_ours, adv_trl, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss_ours, loss_trl, atol=1e-6, rtol=0)
    assert grads_ours.keys() == grads_trl.keys() and grads_ours
    for name in grads_trl:
        torch.testing.assert_close(grads_ours[name], grads_trl[name], atol=1e-6, rtol=0, msg=name)
    metrics_trl, metrics_ours = (dict(t._metrics["train"]) for t in trainers)
    if trainers[1]._skip_zero_rows:  # TRL's entropy over all rows, ours over the rows with an advantage
        entropy = metrics_trl.pop("entropy")
        if (adv_trl != 0).all():
            assert metrics_ours.pop("drgrpo/trained_entropy") == pytest.approx(entropy, abs=1e-6)
    assert set(metrics_trl) <= set(metrics_ours)
    assert {k for k in metrics_ours if k not in metrics_trl} <= {
        k for k in metrics_ours if k.startswith("drgrpo/")
    }
    for key, values in metrics_trl.items():
        if key == "num_tokens" or key.startswith("profiling/"):
            continue
        assert metrics_ours[key] == pytest.approx(values, abs=1e-6, nan_ok=True), key


def test_the_features_change_the_loss(tmp_path, model_and_tokenizer):
    """Each feature above really changes the loss or gradients on this batch (so the test above can fail)."""
    plain = _loss_and_grads(
        _trainer(
            DrGRPOTrainer,
            model_and_tokenizer,
            DrGRPOConfig(truncated_completion_reward=None, **_common_args(tmp_path / "plain")),
        ),
        _inputs(),
        off_policy=True,
    )
    for feature, options in FEATURES.items():
        if feature in ("adaptive_entropy", "kl"):  # bonus starts at 0 / reference equals the policy at step 0
            continue
        args = DrGRPOConfig(
            truncated_completion_reward=None, **{**_common_args(tmp_path / feature), **options}
        )
        trainer = _trainer(DrGRPOTrainer, model_and_tokenizer, args)
        _, loss, grads = _loss_and_grads(trainer, _inputs(), off_policy=True)
        differs = not torch.allclose(loss, plain[1]) or any(
            not torch.allclose(grads[n], plain[2][n], atol=1e-7) for n in grads
        )
        assert differs, feature


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length_weight_exponent": 1.5}, "must be in \\[0, 1\\]"),
        ({"length_weight_exponent": 0.5, "length_normalization": True}, "contradicts length_normalization"),
        ({"length_weight_exponent": 0.5, "beta": 0.1}, "needs beta=0"),
        ({"length_weight_exponent": 0.0, "loss_type": "grpo"}, "contradicts"),
    ],
)
def test_bad_length_weight_settings_are_clear_errors(tmp_path, options, message):
    args = {**_common_args(tmp_path), **options}
    with pytest.raises(ValueError, match=message):
        DrGRPOConfig(**args)


def test_graded_length_weight_ends_are_the_two_arms(tmp_path):
    """alpha = 1 and 0 are the existing switches (the same TRL loss types), whatever the recipe's switch says."""
    one = DrGRPOConfig(length_weight_exponent=1, length_normalization=False, **_common_args(tmp_path))
    zero = DrGRPOConfig(length_weight_exponent=0, **_common_args(tmp_path))
    half = DrGRPOConfig(length_weight_exponent=0.5, **_common_args(tmp_path))
    assert (one.length_normalization, one.loss_type) == (True, "grpo")
    assert (zero.length_normalization, zero.loss_type) == (False, "dr_grpo")
    assert (half.length_normalization, half.loss_type) == (False, "dr_grpo")
