"""Drop-in: trl.GRPOTrainer and DrGRPOTrainer log the same metrics for the same settings (plus drgrpo/*).

Short real training runs (one optimizer step) on the same tiny model, once with each trainer; TRL's GRPOConfig
gets the `loss_type`/`scale_rewards` that DrGRPOConfig derives from its switches.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, Qwen3MoeConfig, Qwen3MoeForCausalLM
from trl import GRPOConfig, GRPOTrainer

from tests.run_args import cpu_run_args
from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer

QUESTIONS = ["1+1=", "2+3=", "7-4=", "3*3="]
OURS_ONLY = {
    "drgrpo/truncated_fraction",
    "drgrpo/zero_std_group_fraction",
    "drgrpo/correct_mean_length",
    "drgrpo/incorrect_mean_length",
    "drgrpo/trained_token_fraction",  # gradient_tokens_only (on by default)
    "drgrpo/trained_entropy",  # replaces TRL's `entropy` where gradient_tokens_only leaves rows out
}
#: TRL's keys that DrGRPOTrainer logs under another name where it leaves zero-advantage rows out (beta 0, no
#: entropy bonus): their entropy is never computed, so TRL's `entropy` (over all rows) cannot be logged.
RENAMED = {"entropy": "drgrpo/trained_entropy"}


def digit_reward(completions, **kwargs) -> list[float]:
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


@pytest.fixture(scope="module")
def tiny_moe_dir(tiny_model_dir, tmp_path_factory) -> str:
    """A random-weight Qwen3-MoE model with the tiny tokenizer: it returns router logits, so aux_loss is on."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        num_experts=4,
        num_experts_per_tok=2,
        router_aux_loss_coef=0.01,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_moe")
    Qwen3MoeForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def _args(config_cls, tmp_path, **options):
    """One optimizer step of 4 responses (one group) on CPU; `options` override the defaults."""
    values = dict(
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=1,
        learning_rate=1e-3,
    )
    return cpu_run_args(config_cls, tmp_path, **{**values, **options})


def _trainer(cls, config_cls, model: str, tmp_path, **options):
    return cls(
        model=model,
        reward_funcs=digit_reward,
        args=_args(config_cls, tmp_path, **options),
        train_dataset=Dataset.from_dict({"prompt": QUESTIONS}),
    )


def _keys(cls, config_cls, model: str, tmp_path, **options) -> set[str]:
    trainer = _trainer(cls, config_cls, model, tmp_path, **options)
    trainer.train()
    return {key for entry in trainer.state.log_history for key in entry}


SETTINGS = {
    "dr_grpo": ({}, {}),
    "grpo_switches": (
        {"loss_type": "grpo", "scale_rewards": "group"},
        {"length_normalization": True, "std_normalization": True},
    ),
    "entropy_bonus_and_kl": ({"entropy_coef": 0.01, "beta": 0.04}, {"entropy_coef": 0.01, "beta": 0.04}),
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_same_metric_keys_as_trl(tiny_model_dir, tmp_path, setting):
    trl_options, our_switches = SETTINGS[setting]
    trl_options = {"loss_type": "dr_grpo", "scale_rewards": "none", **trl_options}
    our_options = {
        "truncated_completion_reward": None,
        **{k: v for k, v in trl_options.items() if k not in ("loss_type", "scale_rewards")},
        **our_switches,
    }
    trl_keys = _keys(GRPOTrainer, GRPOConfig, tiny_model_dir, tmp_path / "trl", **trl_options)
    our_keys = _keys(DrGRPOTrainer, DrGRPOConfig, tiny_model_dir, tmp_path / "ours", **our_options)
    rows_left_out = "beta" not in trl_options
    renamed = set(RENAMED) if rows_left_out else set()
    assert trl_keys - our_keys == renamed
    assert our_keys - trl_keys <= OURS_ONLY
    entropy = RENAMED["entropy"] if rows_left_out else "entropy"
    assert {"clip_ratio/low_min", "clip_ratio/high_max", entropy} <= our_keys


@pytest.mark.slow
def test_moe_logs_aux_loss_like_trl(tiny_moe_dir, tmp_path):
    """TRL's test_train on MoE models reads log_history[-1]["aux_loss"]."""
    trl_keys = _keys(
        GRPOTrainer, GRPOConfig, tiny_moe_dir, tmp_path / "trl", loss_type="dr_grpo", scale_rewards="none"
    )
    our_keys = _keys(
        DrGRPOTrainer, DrGRPOConfig, tiny_moe_dir, tmp_path / "ours", truncated_completion_reward=None
    )
    assert "aux_loss" in trl_keys and "aux_loss" in our_keys
    assert trl_keys - our_keys == set()


@pytest.mark.slow
def test_every_response_truncated_still_trains_with_trl_reward_functions(tiny_model_dir, tmp_path):
    """TRL's own tests: a short budget cuts every response, the reward is a plain function, parameters must move.

    Under the default truncated_completion_reward="auto" the paper's 0 applies to answer-checking rewards only
    (MathReward), so a TRL reward function keeps its scores for cut responses, as with trl.GRPOTrainer.
    """
    eos = AutoTokenizer.from_pretrained(tiny_model_dir).eos_token_id
    trainer = _trainer(
        DrGRPOTrainer,
        DrGRPOConfig,
        tiny_model_dir,
        tmp_path,
        max_completion_length=4,
        learning_rate=1e-2,
        generation_kwargs={"sequence_bias": {(eos,): -100.0}},  # never EOS: every response is cut
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[0]["drgrpo/truncated_fraction"] == 1.0
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
    assert moved
