"""DrGRPOTrainer keeps GRPOTrainer's features: short real training runs on the tiny model."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer
from trl import GRPOConfig

from tests.run_args import cpu_run_args
from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer
from trl_drgrpo.config import batch_shape
from trl_drgrpo.trainer import cut_after_stop

QUESTIONS = ["1+1=", "2+3=", "7-4=", "3*3="]


def digit_reward(completions, **kwargs) -> list[float]:
    """Fraction of characters that are digits: varies within a group even for a random model."""
    return [sum(ch.isdigit() for ch in _text(c)) / max(len(_text(c)), 1) for c in completions]


def length_reward(completions, **kwargs) -> list[float]:
    return [min(len(_text(c)), 20) / 20 for c in completions]


def _text(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def _args(tmp_path, **overrides) -> DrGRPOConfig:
    values = dict(
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        # The random tiny model never ends a response, so keep the rewards of truncated responses.
        truncated_completion_reward=None,
    )
    return cpu_run_args(DrGRPOConfig, tmp_path, **{**values, **overrides})


def _train(tiny_model_dir, args, dataset=None, **kwargs) -> DrGRPOTrainer:
    trainer = DrGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=kwargs.pop("reward_funcs", digit_reward),
        args=args,
        train_dataset=dataset or Dataset.from_dict({"prompt": QUESTIONS}),
        **kwargs,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    changed = [
        n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)
    ]
    assert changed, "training must update the trainable parameters"
    return trainer


def _logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_logs_the_paper_metrics(tiny_model_dir, tmp_path):
    trainer = _train(tiny_model_dir, _args(tmp_path))
    assert len(_logged(trainer, "loss")) == 2
    for key in ("drgrpo/truncated_fraction", "drgrpo/zero_std_group_fraction", "reward"):
        assert _logged(trainer, key), key
    # TRL's entropy, or (zero-advantage rows left out by gradient_tokens_only) that of the rows trained
    assert _logged(trainer, "entropy") or _logged(trainer, "drgrpo/trained_entropy")
    assert _logged(trainer, "drgrpo/correct_mean_length") or _logged(trainer, "drgrpo/incorrect_mean_length")


def test_grad_accumulation_steps_per_generation_and_num_iterations(tiny_model_dir, tmp_path):
    args = _args(
        tmp_path,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        steps_per_generation=4,
        num_iterations=2,
    )
    trainer = _train(tiny_model_dir, args)
    assert trainer.state.global_step == 2


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_several_weighted_reward_functions_and_conversational_prompts(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in QUESTIONS]})
    args = _args(tmp_path, reward_weights=[1.0, 0.5])
    trainer = _train(
        tiny_model_dir,
        args,
        dataset=dataset,
        reward_funcs=[digit_reward, length_reward],
        processing_class=tokenizer,
    )
    assert _logged(trainer, "rewards/length_reward/mean")


def test_peft_lora_trains_only_the_adapter(tiny_model_dir, tmp_path):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _train(tiny_model_dir, _args(tmp_path), peft_config=config)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_plain_grpo_config_is_refused_with_a_hint(tiny_model_dir, tmp_path):
    with pytest.raises(TypeError, match="DrGRPOConfig"):
        DrGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=digit_reward,
            args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False),
            train_dataset=Dataset.from_dict({"prompt": QUESTIONS}),
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_generations": 1}, "at least 2 generations"),
        ({"loss_normalizer": 0.0}, "loss_normalizer must be positive"),
        ({"loss_type": "dapo"}, r"loss_type='dapo' is neither of the paper's two settings"),
        ({"loss_type": "cispo"}, r"use trl.GRPOTrainer for loss_type='cispo'"),
        ({"scale_rewards": "batch"}, r"scale_rewards='batch' is neither"),
        ({"length_normalization": True, "loss_type": "dr_grpo"}, "contradicts length_normalization=True"),
        ({"std_normalization": False, "scale_rewards": "group"}, "contradicts std_normalization=False"),
        # TRL accepts scale_rewards=True for 'group': the message names the value the user wrote
        (
            {"std_normalization": False, "scale_rewards": True},
            r"scale_rewards=True contradicts std_normalization",
        ),
        ({"std_eps": -1.0}, "std_eps must be >= 0"),
        ({"no_signal_patience": -1}, "no_signal_patience must be >= 0"),
    ],
)
def test_invalid_config_values_fail_at_construction(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, **overrides)


def test_paper_defaults():
    args = DrGRPOConfig(output_dir="unused", use_cpu=True, bf16=False)
    assert (args.length_normalization, args.std_normalization, args.beta) == (False, False, 0.0)
    assert (args.loss_type, args.scale_rewards) == ("dr_grpo", "none")
    assert args.max_completion_length == 3000 and args.loss_normalizer == 3000.0
    assert (args.temperature, args.top_p, args.top_k, args.num_generations) == (1.0, 1.0, 0, 8)
    assert (
        args.learning_rate == 1e-6
        and getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "constant"
    )
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay, args.max_grad_norm) == (0.9, 0.95, 0.0, 1.0)
    assert (args.epsilon, args.num_iterations, args.vllm_importance_sampling_correction) == (0.2, 1, False)
    assert args.truncated_completion_reward == "auto" and args.correct_reward_threshold == 1.0
    assert args.std_eps == 1e-8  # the paper's code (oat); TRL: 1e-4


@pytest.mark.parametrize(
    ("overrides", "switches"),
    [
        ({}, (False, False)),  # the paper
        ({"scale_rewards": "none", "loss_type": "dr_grpo"}, (False, False)),
        ({"scale_rewards": False}, (False, False)),
        # TRL's names alone set the switches, so a GRPOConfig(...) call keeps its meaning after the drop-in
        ({"loss_type": "grpo"}, (True, False)),
        ({"scale_rewards": "group"}, (False, True)),
        ({"scale_rewards": True, "loss_type": "grpo"}, (True, True)),
        ({"std_normalization": True, "scale_rewards": True, "length_normalization": True}, (True, True)),
        # TRL features that compose with the paper's aggregation are accepted as they are
        (
            {"entropy_coef": 0.01, "top_entropy_quantile": 0.5, "off_policy_mask_threshold": 0.5},
            (False, False),
        ),
        (
            {"importance_sampling_level": "sequence", "multi_objective_aggregation": "normalize_then_sum"},
            (False, False),
        ),
        ({"use_adaptive_entropy": True}, (False, False)),
    ],
)
def test_settings_that_agree_with_the_switches_are_accepted(tmp_path, overrides, switches):
    args = _args(tmp_path, **overrides)
    assert (args.length_normalization, args.std_normalization) == switches
    assert args.loss_type == ("grpo" if args.length_normalization else "dr_grpo")
    assert args.scale_rewards == ("group" if args.std_normalization else "none")


@pytest.mark.parametrize(
    ("per_device", "processes", "accumulation", "steps_per_generation"),
    [(16, 8, 1, 8), (2, 8, 8, 64), (16, 4, 2, 16), (16, 1, 8, 64)],
)
def test_paper_batch_shape_for_any_number_of_processes(
    per_device, processes, accumulation, steps_per_generation
):
    # 128 responses per optimizer step, 1024 per rollout (128 questions x 8), as in the paper.
    got_accumulation, generation_batch = batch_shape(per_device, processes, 128, 1024)
    assert got_accumulation == accumulation and generation_batch == 1024
    assert generation_batch // (per_device * processes) == steps_per_generation


def test_batch_shape_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="not a multiple of per_device_train_batch_size"):
        batch_shape(16, 3, 128, 1024)
    with pytest.raises(ValueError, match="samples_per_rollout=1000 must be a multiple"):
        batch_shape(16, 8, 128, 1000)


def test_config_applies_the_batch_shape_in_one_process(tmp_path):
    args = _args(
        tmp_path,
        per_device_train_batch_size=16,
        samples_per_step=128,
        samples_per_rollout=1024,
        num_generations=8,
    )
    assert (args.gradient_accumulation_steps, args.generation_batch_size, args.steps_per_generation) == (
        8,
        1024,
        64,
    )


def _train_with_forced_token(tiny_model_dir, tmp_path, token: str, **overrides) -> DrGRPOTrainer:
    """One step in which `token` is the only likely token, so every response is that token repeated."""
    token_id = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids(token)
    args = _args(
        tmp_path, max_steps=1, generation_kwargs={"sequence_bias": {(token_id,): 100.0}}, **overrides
    )
    trainer = DrGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=digit_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": QUESTIONS}),
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("extra", [True, False])
def test_extra_eos_tokens_end_responses(tiny_model_dir, tmp_path, extra):
    """`<|im_end|>` as an extra end of sequence: generation stops there and the response is not truncated."""
    trainer = _train_with_forced_token(
        tiny_model_dir, tmp_path, "<|im_end|>", extra_eos_tokens=["<|im_end|>"] if extra else None
    )
    im_end = trainer.processing_class.convert_tokens_to_ids("<|im_end|>")
    assert (im_end in trainer.eos_token_ids) == extra
    assert _logged(trainer, "drgrpo/truncated_fraction") == [0.0 if extra else 1.0]
    assert _logged(trainer, "completions/mean_length") == [1.0 if extra else 8.0]


def test_unknown_extra_eos_token_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"\['<\|eot\|>'\] are not single tokens"):
        DrGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=digit_reward,
            args=_args(tmp_path, extra_eos_tokens=["<|eot|>"]),
            train_dataset=Dataset.from_dict({"prompt": QUESTIONS}),
        )


def test_cut_after_stop_keeps_the_stop_string(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(" 1+1 </think> <answer> 2 </answer> and more text")["input_ids"]
    cut = cut_after_stop(ids, ["</answer>"], tokenizer)
    assert tokenizer.decode(cut) == " 1+1 </think> <answer> 2 </answer>"
    assert cut_after_stop(ids, ["<never>"], tokenizer) == ids


@pytest.mark.parametrize("stop", [True, False])
def test_stop_strings_cut_transformers_generations(tiny_model_dir, tmp_path, stop):
    """With stop_strings, a response generated by transformers ends right after the first stop string."""
    # the model writes "!!!!!!!!"
    trainer = _train_with_forced_token(tiny_model_dir, tmp_path, "!", stop_strings=["!!!"] if stop else None)
    assert _logged(trainer, "completions/mean_length") == [3.0 if stop else 8.0]
    assert _logged(trainer, "drgrpo/truncated_fraction") == [0.0 if stop else 1.0]
    # TRL's own length metrics agree (TRL alone calls a response clipped when its last token is not EOS)
    assert _logged(trainer, "completions/clipped_ratio") == [0.0 if stop else 1.0]
    assert _logged(trainer, "completions/mean_terminated_length") == [3.0 if stop else 0.0]
    assert _logged(trainer, "completions/max_terminated_length") == [3.0 if stop else 0.0]


def test_the_completion_table_is_written_once_per_rollout(tiny_model_dir, tmp_path):
    """log_completions with a log every optimizer step: one table per rollout (2 steps each), not per step."""
    args = _args(
        tmp_path, max_steps=4, steps_per_generation=2, log_completions=True, num_completions_to_print=1
    )
    trainer = _train(tiny_model_dir, args)
    assert len(_logged(trainer, "loss")) == 4
    tables = sorted(p.name for p in (tmp_path / "completions").glob("*.parquet"))
    assert tables == ["completions_00001.parquet", "completions_00003.parquet"]
