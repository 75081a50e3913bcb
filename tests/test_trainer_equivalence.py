"""DrGRPOTrainer against TRL's own GRPOTrainer on the same model and the same fixed batch.

For each (length_normalization, std_normalization) setting, TRL's (loss_type, scale_rewards) that means the
same thing must give the same advantages, loss and gradients. The completions come from a fixed
``rollout_func``, so neither trainer samples anything.

Legitimate differences, switched off here and tested separately:
- ``truncated_completion_reward`` (Dr. GRPO gives a truncated response reward 0; TRL has no such option), so
  it is set to ``None`` for the comparison;
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
from trl_drgrpo.objective import TRL_STD_EPS

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


def _loss_and_grads(trainer, inputs: list[dict]):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(inputs)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return batch["advantages"], loss.detach(), grads


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

    def always_one(completions, **kwargs):
        return [1.0] * len(completions)

    trainer = _trainer(DrGRPOTrainer, model_and_tokenizer, DrGRPOConfig(**_common_args(tmp_path)), always_one)
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
