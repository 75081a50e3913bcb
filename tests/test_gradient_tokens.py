"""`gradient_tokens_only`: DrGRPOTrainer trains only the tokens that carry gradient and makes TRL's update.

Both trainers run `train()` for a few optimizer steps (several micro-batches per step, SGD so the weights follow
the gradients) on the same fixed rollouts: prompts of different lengths (left-padding to trim), completions of
different lengths (right-padding to trim), some groups whose rewards are all equal (zero-advantage rows to leave
out) and two reward functions with unequal weights. Gradients of every step and the final weights must match
TRL's `GRPOTrainer` within 1e-6, and the savings must really have happened (recorded micro-batch shapes).
The pure functions of `training/batching.py` are tested on their own at the end.
"""

from __future__ import annotations

import copy
import random
import zlib

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from tests.run_args import cpu_run_args
from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer
from trl_drgrpo.objective import TRL_STD_EPS
from trl_drgrpo.training import batching

MAX_LEN = 16
GROUP = 4
PROMPTS = [
    "1+1=",
    "same: 2+2=",
    "What is twelve plus thirty, written in digits?",
    "same question, asked with a much longer prompt: 7*8=",
    "9-3=",
    "same 5+5=",
]


def varied_rollout(prompts: list[str], trainer) -> dict:
    """Deterministic completions of varied lengths, different at each optimizer step; some truncated."""
    tok = trainer.processing_class
    rng = random.Random(zlib.crc32("|".join(prompts).encode()) + trainer.state.global_step)
    prompt_ids, completion_ids = [], []
    for prompt in prompts:
        prompt_ids.append(tok(prompt)["input_ids"])
        length = rng.choice([1, 2, 3, 4, 6, 9, MAX_LEN])
        ids = [rng.randrange(3, 200) for _ in range(length)]
        if length < MAX_LEN:
            ids[-1] = tok.eos_token_id
        completion_ids.append(ids)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def parity_reward(prompts, completion_ids, **kwargs) -> list[float]:
    """Varies within a group, except for the "same" prompts (all 1: zero-advantage groups)."""
    return [
        1.0 if p.startswith("same") else float(len(c) % 3 == 0)
        for p, c in zip(prompts, completion_ids, strict=True)
    ]


def odd_reward(prompts, completion_ids, **kwargs) -> list[float]:
    return [
        0.0 if p.startswith("same") else float(len(c) % 2)
        for p, c in zip(prompts, completion_ids, strict=True)
    ]


class GradientRecorder(TrainerCallback):
    """The gradients each optimizer step applies."""

    def __init__(self):
        self.model = None
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.steps.append(
            {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None}
        )


def _args(cls, tmp_path, **options):
    common = dict(
        per_device_train_batch_size=GROUP,
        gradient_accumulation_steps=3,
        steps_per_generation=6,  # two optimizer steps per rollout: grouping must not mix them
        num_generations=GROUP,
        max_completion_length=MAX_LEN,
        max_steps=4,
        optim="sgd",
        learning_rate=0.1,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        beta=0.0,
        reward_weights=[1.0, 0.3],
    )
    trl_only = {"loss_type", "scale_rewards"}
    ours_only = {"length_normalization", "std_normalization", "gradient_tokens_only"}
    if cls is GRPOConfig:
        options = {"loss_type": "dr_grpo", "scale_rewards": "none", **options}
        options = {k: v for k, v in options.items() if k not in ours_only}
    else:
        options = {k: v for k, v in options.items() if k not in trl_only}
        common.update(truncated_completion_reward=None, std_eps=TRL_STD_EPS)
    return cpu_run_args(cls, tmp_path, **{**common, **options})


def _train(trainer_cls, config_cls, model_and_tokenizer, tmp_path, peft_config=None, **options):
    """Train; return the trainer, the gradients of each step and the micro-batch shapes TRL's loss saw."""
    model, tok = model_and_tokenizer
    recorder = GradientRecorder()
    trainer = trainer_cls(
        model=copy.deepcopy(model),
        reward_funcs=[parity_reward, odd_reward],
        args=_args(config_cls, tmp_path, **options),
        train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
        processing_class=tok,
        rollout_func=varied_rollout,
        callbacks=[recorder],
        peft_config=peft_config,
    )
    recorder.model = trainer.model
    shapes = []
    inner = trainer._compute_loss

    def recording(model, inputs):
        shapes.append(
            (
                inputs["completion_ids"].size(0),
                inputs["prompt_ids"].size(1),
                inputs["completion_ids"].size(1),
                int((inputs["advantages"] == 0).sum()),
                int(inputs["completion_mask"].sum(1).max()),  # the longest response
            )
        )
        return inner(model, inputs)

    trainer._compute_loss = recording
    torch.manual_seed(0)
    trainer.train()
    return trainer, recorder.steps, shapes


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def absolute_positions_model(tiny_model_dir, tmp_path_factory):
    """A tiny GPT-2 (learned absolute position embeddings): cutting left-padding without keeping the positions
    changes its outputs, whereas RoPE models are almost invariant to the shift."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    config.pad_token_id, config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    path = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path), tok


def _compare(tmp_path, model_and_tokenizer, peft_config=None, exact=False, **options):
    runs = [
        _train(t, c, model_and_tokenizer, tmp_path / c.__name__, peft_config=peft_config, **options)
        for t, c in ((GRPOTrainer, GRPOConfig), (DrGRPOTrainer, DrGRPOConfig))
    ]
    (trl, trl_grads, trl_shapes), (ours, our_grads, our_shapes) = runs
    assert len(our_grads) == len(trl_grads) == 4
    assert any(g.abs().sum() > 0 for step in trl_grads for g in step.values()), "the workload must learn"
    tol = dict(atol=0.0, rtol=0.0) if exact else dict(atol=1e-6, rtol=0.0)
    for step, (mine, theirs) in enumerate(zip(our_grads, trl_grads, strict=True)):
        assert mine.keys() == theirs.keys() and mine
        for name in theirs:
            diff = (mine[name] - theirs[name]).abs().max().item()
            torch.testing.assert_close(
                mine[name], theirs[name], **tol, msg=f"step {step}: {name}: {diff:.3g}"
            )
    weights = dict(trl.model.named_parameters())
    for name, param in ours.model.named_parameters():
        torch.testing.assert_close(param, weights[name], **tol, msg=name)
    return trl, ours, trl_shapes, our_shapes


def _assert_savings(trl_shapes, our_shapes, rows_left_out=True):
    """The savings happened: fewer tokens per micro-batch, and (if exact) zero-advantage rows left out."""
    trl_tokens = sum(r * (p + c) for r, p, c, *_ in trl_shapes)
    our_tokens = sum(r * (p + c) for r, p, c, *_ in our_shapes)
    assert our_tokens < trl_tokens
    assert any(ours[1] < theirs[1] for ours, theirs in zip(our_shapes, trl_shapes, strict=True)), (
        "no prompt padding trimmed"
    )
    assert any(ours[2] < theirs[2] for ours, theirs in zip(our_shapes, trl_shapes, strict=True)), (
        "no completion padding trimmed"
    )
    assert any(r < GROUP for r, *_ in our_shapes) == rows_left_out


@pytest.mark.parametrize(
    ("length_normalization", "std_normalization"),
    [(False, False), (True, False), (False, True), (True, True)],
)
def test_same_update_as_trl_for_the_four_arms(
    tmp_path, model_and_tokenizer, length_normalization, std_normalization
):
    _, ours, trl_shapes, our_shapes = _compare(
        tmp_path,
        model_and_tokenizer,
        loss_type="grpo" if length_normalization else "dr_grpo",
        scale_rewards="group" if std_normalization else "none",
        length_normalization=length_normalization,
        std_normalization=std_normalization,
    )
    _assert_savings(trl_shapes, our_shapes)
    fractions = ours._metrics["train"].get("drgrpo/trained_token_fraction") or [
        h["drgrpo/trained_token_fraction"]
        for h in ours.state.log_history
        if "drgrpo/trained_token_fraction" in h
    ]
    assert fractions and all(0 < f <= 1 for f in fractions) and min(fractions) < 1


def test_same_update_with_a_graded_length_weight(tmp_path, model_and_tokenizer):
    """length_weight_exponent composes with gradient_tokens_only: the weight depends on the row's own length."""
    runs = [
        _train(
            DrGRPOTrainer,
            DrGRPOConfig,
            model_and_tokenizer,
            tmp_path / str(on),
            length_weight_exponent=0.5,
            gradient_tokens_only=on,
        )
        for on in (False, True)
    ]
    (_, full, full_shapes), (_, cut, cut_shapes) = runs
    _assert_savings(full_shapes, cut_shapes)
    assert any(g.abs().sum() > 0 for step in full for g in step.values())
    for step, (mine, theirs) in enumerate(zip(cut, full, strict=True)):
        assert mine.keys() == theirs.keys() and mine
        for name in theirs:
            torch.testing.assert_close(
                mine[name], theirs[name], atol=1e-6, rtol=0.0, msg=f"step {step}: {name}"
            )


def test_same_update_with_absolute_position_embeddings(tmp_path, absolute_positions_model):
    """The kept tokens keep TRL's positions (the trimmed left-padding's offset is passed to the model)."""
    _, _, trl_shapes, our_shapes = _compare(tmp_path, absolute_positions_model)
    _assert_savings(trl_shapes, our_shapes)


def test_same_update_with_two_passes_per_rollout(tmp_path, model_and_tokenizer):
    _, _, trl_shapes, our_shapes = _compare(tmp_path, model_and_tokenizer, num_iterations=2)
    _assert_savings(trl_shapes, our_shapes)


def test_same_update_with_peft(tmp_path, model_and_tokenizer):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    _, _, trl_shapes, our_shapes = _compare(tmp_path, model_and_tokenizer, peft_config=lora)
    _assert_savings(trl_shapes, our_shapes)


def test_same_update_with_kl_after_the_first_step(tmp_path, model_and_tokenizer):
    """beta > 0: the KL term has a gradient on every row, so rows are kept; after step 1 ref != policy."""
    trl, _, trl_shapes, our_shapes = _compare(tmp_path, model_and_tokenizer, beta=0.5)
    _assert_savings(trl_shapes, our_shapes, rows_left_out=False)

    # No row is left out here, so length grouping shows: within a step, micro-batches get narrower.
    def sorted_steps(shapes):
        widths = [longest for *_, longest in shapes]
        return all(
            widths[i : i + 3] == sorted(widths[i : i + 3], reverse=True) for i in range(0, len(widths), 3)
        )

    assert sorted_steps(our_shapes) and not sorted_steps(trl_shapes)
    kls = [h["kl"] for h in trl.state.log_history if "kl" in h]
    assert kls[0] == 0 and kls[-1] > 1e-6, "the KL term must matter in the later steps"


def test_same_update_with_adaptive_entropy_after_the_first_step(tmp_path, model_and_tokenizer):
    trl, _, trl_shapes, our_shapes = _compare(
        tmp_path,
        model_and_tokenizer,
        use_adaptive_entropy=True,
        entropy_target=100.0,
        entropy_coef_delta=0.5,
    )
    _assert_savings(trl_shapes, our_shapes, rows_left_out=False)
    coefs = [h["entropy_coef"] for h in trl.state.log_history if "entropy_coef" in h]
    assert coefs[0] > 0, "the entropy bonus must be on after the first step"


def test_switch_off_is_trl_bit_for_bit(tmp_path, model_and_tokenizer):
    trl, ours, trl_shapes, our_shapes = _compare(
        tmp_path, model_and_tokenizer, exact=True, gradient_tokens_only=False
    )
    assert our_shapes == trl_shapes
    theirs = [{k: v for k, v in h.items() if k not in ("step_time",)} for h in trl.state.log_history]
    mine = [
        {k: v for k, v in h.items() if k != "step_time" and not k.startswith("drgrpo/")}
        for h in ours.state.log_history
    ]
    skip = {"train_runtime", "train_samples_per_second", "train_steps_per_second"}
    for a, b in zip(mine, theirs, strict=True):
        assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
    assert not any("drgrpo/trained_token_fraction" in h for h in ours.state.log_history)


# ---------------------------------------------------------------------------- pure functions
def _batch(prompt_lengths, completion_lengths, advantages, width_p=6, width_c=8):
    rows = len(prompt_lengths)
    prompt_mask = torch.zeros(rows, width_p, dtype=torch.long)
    completion_mask = torch.zeros(rows, width_c, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_lengths, completion_lengths, strict=True)):
        prompt_mask[i, width_p - p :] = 1
        completion_mask[i, :c] = 1
    return {
        "prompt_ids": torch.arange(rows * width_p).view(rows, width_p),
        "prompt_mask": prompt_mask,
        "completion_ids": torch.arange(rows * width_c).view(rows, width_c),
        "completion_mask": completion_mask,
        "old_per_token_logps": torch.randn(rows, width_c),
        "importance_sampling_ratio": torch.rand(rows, 1),
        "advantages": torch.tensor(advantages, dtype=torch.float),
        "num_items_in_batch": torch.tensor(99),
    }


def test_trim_padding_keeps_every_real_token():
    batch = _batch([2, 4, 1], [3, 5, 1], [0.0, 1.0, -1.0])
    trimmed, offset = batching.trim_padding(batch)
    assert offset == 2 and trimmed["prompt_ids"].shape == (3, 4) and trimmed["completion_ids"].shape == (3, 5)
    assert trimmed["old_per_token_logps"].shape == (3, 5) and trimmed["importance_sampling_ratio"].shape == (
        3,
        1,
    )
    assert trimmed["prompt_mask"].sum() == batch["prompt_mask"].sum()
    assert trimmed["completion_mask"].sum() == batch["completion_mask"].sum()
    assert torch.equal(trimmed["prompt_ids"], batch["prompt_ids"][:, 2:])
    empty, _ = batching.trim_padding(_batch([1], [0], [0.0]))
    assert empty["completion_ids"].size(1) == 1  # never zero-width


def test_rows_to_train_keeps_every_signal_row_then_the_shortest_fillers():
    advantages = torch.tensor([0.0, 0.5, 0.0, 0.0, -0.5])
    lengths = torch.tensor([9, 3, 2, 7, 4])
    assert batching.rows_to_train(advantages, lengths, 2).tolist() == [1, 4]
    assert batching.rows_to_train(advantages, lengths, 3).tolist() == [1, 2, 4]
    assert batching.rows_to_train(torch.zeros(3), torch.tensor([5, 1, 3]), 1).tolist() == [1]
    with pytest.raises(ValueError):
        batching.rows_to_train(advantages, lengths, 1)
    assert batching.nonzero_rows(torch.tensor([[0.0, 0.0], [0.0, 1e-30]])).tolist() == [False, True]


def test_step_keys_follow_the_optimizer_steps():
    assert batching.step_keys(0, 4, 1, 2) == [(0,), (0,), (1,), (1,)]
    assert batching.step_keys(8, 2, 2, 4) == [(2, 2), (2, 2)]  # two passes, one step per cycle
    assert batching.step_keys(0, 3, 2, 3) == [(0, 1), (0, 1), (0, 1)]


def test_group_by_length_moves_rows_only_within_a_step():
    slices = [
        _batch([1, 6], [8, 1], [1.0, 2.0]),
        _batch([2, 3], [2, 7], [3.0, 4.0]),
        _batch([6, 6], [8, 8], [5.0, 6.0]),
    ]
    grouped = batching.group_by_length(slices, [0, 0, 1])
    assert grouped[2] is slices[2]  # alone in its step: untouched
    assert grouped[0]["advantages"].tolist() == [1.0, 4.0]  # the two longest completions of step 0
    assert grouped[1]["advantages"].tolist() == [3.0, 2.0]
    step0 = sorted(torch.cat([g["advantages"] for g in grouped[:2]]).tolist())
    assert step0 == [1.0, 2.0, 3.0, 4.0]
    assert all(g["num_items_in_batch"] == 99 for g in grouped)
    with pytest.raises(ValueError):
        batching.group_by_length(slices, [0, 0])


def test_unsupported_keys_are_named():
    batch = _batch([1], [1], [0.0])
    assert batching.unsupported_keys(batch) == []
    assert batching.unsupported_keys({**batch, "pixel_values": torch.zeros(1)}) == ["pixel_values"]


@pytest.mark.parametrize(
    ("options", "skips", "groups", "reason"),
    [
        ({}, True, True, None),
        ({"beta": 0.1}, False, True, "beta != 0"),
        ({"entropy_coef": 0.01}, False, False, "entropy bonus"),
        ({"top_entropy_quantile": 0.5}, False, False, "top_entropy_quantile"),
        ({"steps_per_generation": 4}, True, False, "not a whole number of optimizer steps"),
        ({"gradient_tokens_only": False}, False, False, None),
    ],
)
def test_each_saving_only_where_exact(tmp_path, model_and_tokenizer, options, skips, groups, reason):
    """Where a saving would change the update it is off, and the reason is logged once."""
    trainer = DrGRPOTrainer(
        model=copy.deepcopy(model_and_tokenizer[0]),
        reward_funcs=[parity_reward, odd_reward],
        args=_args(DrGRPOConfig, tmp_path, **options),
        train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
        processing_class=model_and_tokenizer[1],
        rollout_func=varied_rollout,
    )
    assert (trainer._skip_zero_rows, trainer._group_rows) == (skips, groups)
    assert trainer._trim_batches == options.get("gradient_tokens_only", True)
    notes = " ".join(trainer._notes)
    assert (reason in notes) if reason else not notes
