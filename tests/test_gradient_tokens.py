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
import math
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

    def make(tok):
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
        return GPT2LMHeadModel(config)

    return _saved_model(tmp_path_factory, tiny_model_dir, "gpt2", make)


def _saved_model(tmp_path_factory, tiny_model_dir, name: str, make):
    """A tiny random model built by ``make(tokenizer)`` (seeded), saved and loaded back with its tokenizer."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = make(tok)
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path), tok


def _opt(tiny_model_dir, tmp_path_factory, name: str, **options):
    """A tiny OPT: its positions are ``cumsum(attention_mask) - 1`` (the first real token of a left-padded row
    is position 0), not ``arange`` over the columns."""
    from transformers import OPTConfig, OPTForCausalLM

    def make(tok):
        config = OPTConfig(
            **options,
            vocab_size=len(tok),
            hidden_size=32,
            word_embed_proj_dim=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=128,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
        )
        return OPTForCausalLM(config)

    return _saved_model(tmp_path_factory, tiny_model_dir, name, make)


@pytest.fixture(scope="module")
def mask_positions_model(tiny_model_dir, tmp_path_factory):
    return _opt(tiny_model_dir, tmp_path_factory, "opt")


@pytest.fixture(scope="module")
def layer_drop_model(tiny_model_dir, tmp_path_factory):
    """A tiny OPT that skips each layer with probability 0.5 in training (one draw per layer and forward)."""
    return _opt(tiny_model_dir, tmp_path_factory, "opt-layerdrop", layerdrop=0.5)


@pytest.fixture(scope="module")
def dropout_model(tiny_model_dir, tmp_path_factory):
    """A tiny GPT-2 with dropout 0.1: its random masks depend on the batch's shape."""
    from transformers import GPT2Config, GPT2LMHeadModel

    def make(tok):
        config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2)
        config.pad_token_id, config.eos_token_id = tok.pad_token_id, tok.eos_token_id
        return GPT2LMHeadModel(config)

    return _saved_model(tmp_path_factory, tiny_model_dir, "gpt2-dropout", make)


#: Original context of the dynamic-RoPE model: below TRL's padded width (longest prompt 30 + budget 16), above
#: the width of a micro-batch whose responses are short, so cutting right padding would change the frequencies.
DYNAMIC_ROPE_CONTEXT = 40


#: RoPE whose frequencies transformers picks from max(position_ids) + 1: dynamic NTK (also from the longest length
#: seen), longrope (short or long factors, per forward).
LENGTH_DEPENDENT_ROPE = {
    "dynamic": {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0},
    "longrope": {
        "rope_type": "longrope",
        "short_factor": [1.0] * 8,  # head_dim 16
        "long_factor": [4.0] * 8,
        "original_max_position_embeddings": DYNAMIC_ROPE_CONTEXT,
        "rope_theta": 10000.0,
    },
}


@pytest.fixture(scope="module", params=sorted(LENGTH_DEPENDENT_ROPE))
def dynamic_rope_model(tiny_model_dir, tmp_path_factory, request):
    """A tiny Llama whose RoPE frequencies follow max(position_ids) + 1 beyond its context (40)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = LENGTH_DEPENDENT_ROPE[request.param]
    context = DYNAMIC_ROPE_CONTEXT if request.param == "dynamic" else 4 * DYNAMIC_ROPE_CONTEXT

    def make(tok):
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=context,
            rope_parameters=dict(rope),
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
        )
        return LlamaForCausalLM(config)

    return _saved_model(tmp_path_factory, tiny_model_dir, request.param, make)


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


def test_same_update_with_positions_from_the_attention_mask(tmp_path, mask_positions_model):
    """OPT's default positions count real tokens (cumsum of the mask): the check forward finds it and the trimmed
    batch keeps the model's own positions (no arange offset)."""
    _, ours, trl_shapes, our_shapes = _compare(tmp_path, mask_positions_model)
    _assert_savings(trl_shapes, our_shapes)
    assert ours._positions == "mask" and any("attention mask" in note for note in ours._notes)


def test_same_update_and_random_stream_with_layer_drop(tmp_path, layer_drop_model):
    """Layer drop draws one number per layer and forward, whatever the shape: cutting micro-batches keeps TRL's
    draws; leaving out TRL's old log-prob forward, recomputing it, or moving rows between micro-batches would not
    (and TRL's next shuffle would differ)."""
    _, ours, trl_shapes, our_shapes = _compare(tmp_path, layer_drop_model)
    _assert_savings(trl_shapes, our_shapes)
    assert ours._draws == "same" and not ours._group_rows and not ours._deferred
    assert any("draws random numbers" in note for note in ours._notes)


def test_dropout_trains_whole_micro_batches(tmp_path, dropout_model):
    """Dropout masks depend on the batch's shape: the savings are switched off (logged), so the update and the
    random stream are TRL's."""
    _, ours, trl_shapes, our_shapes = _compare(tmp_path, dropout_model)
    assert our_shapes == trl_shapes
    assert ours._draws == "shape" and any("disable_dropout" in note for note in ours._notes)


def test_same_update_with_dynamic_rope(tmp_path, dynamic_rope_model):
    """Dynamic NTK / longrope: right padding is kept (the longest position stays TRL's), prompt padding and rows
    are cut."""
    _, ours, trl_shapes, our_shapes = _compare(tmp_path, dynamic_rope_model)
    assert ours._trim_left and not ours._trim_right and any("rope_type" in note for note in ours._notes)
    assert all(o[2] == t[2] for o, t in zip(our_shapes, trl_shapes, strict=True))
    assert any(o[1] < t[1] for o, t in zip(our_shapes, trl_shapes, strict=True)), "no prompt padding trimmed"
    assert any(r < GROUP for r, *_ in our_shapes), "no row left out"
    trl_width = max(p + c for _, p, c, *_ in trl_shapes)
    short = min(t[1] + o[4] for o, t in zip(our_shapes, trl_shapes, strict=True))  # width if right-trimmed
    assert short < DYNAMIC_ROPE_CONTEXT < trl_width, (
        "the workload must cross the context (else trimming is exact)"
    )


def test_same_update_with_gradient_checkpointing(tmp_path, model_and_tokenizer):
    """The recipes' setting: checkpointed training forwards (the check forwards run without it, as TRL's no-grad
    forwards)."""
    _, ours, trl_shapes, our_shapes = _compare(tmp_path, model_and_tokenizer, gradient_checkpointing=True)
    _assert_savings(trl_shapes, our_shapes)
    assert ours._draws == "none" and ours.args.gradient_checkpointing


def test_same_update_with_two_passes_per_rollout(tmp_path, model_and_tokenizer):
    _, ours, trl_shapes, our_shapes = _compare(tmp_path, model_and_tokenizer, num_iterations=2)
    _assert_savings(trl_shapes, our_shapes)
    assert ours._deferred  # TRL's full-width old log-probs left out, computed for the trained tokens only


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


#: Logged values that are not TRL's training metrics (timings) or are this project's own.
NOT_COMPARED = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def _assert_trl_metrics(trl, ours, rows_left_out: bool) -> None:
    """Every metric TRL logged, ours logged with TRL's value (`entropy` renamed where rows are left out)."""
    theirs = [h for h in trl.state.log_history if "loss" in h]
    mine = [h for h in ours.state.log_history if "loss" in h]
    assert len(theirs) == len(mine) == 4
    for step, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        for key, value in b.items():
            if key in NOT_COMPARED:
                continue
            if key == "entropy" and rows_left_out:
                assert key not in a and 0 < a["drgrpo/trained_entropy"], (step, a)
                continue
            assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key, a[key], value)


def test_trl_metrics_with_forced_clipping(tmp_path, model_and_tokenizer):
    """A small clipping range and two passes per rollout: the second pass clips; every logged metric is TRL's
    (clip ratios over TRL's micro-batches, left-out zero-advantage rows counted as unclipped tokens)."""
    trl, ours, trl_shapes, our_shapes = _compare(
        tmp_path, model_and_tokenizer, num_iterations=2, epsilon=0.02, learning_rate=0.5
    )
    _assert_savings(trl_shapes, our_shapes)
    clipped = [h["clip_ratio/region_mean"] for h in trl.state.log_history if "clip_ratio/region_mean" in h]
    assert max(clipped) > 0.05, clipped
    _assert_trl_metrics(trl, ours, rows_left_out=True)


def test_trl_metrics_when_some_micro_batches_are_trained_whole(tmp_path, model_and_tokenizer, monkeypatch):
    """The first rollout carries a key that cannot be sliced (as TRL's image keys): its micro-batches are trained
    whole, the second rollout's are cut. Metrics keep one name and TRL's values in both (no `entropy` from the
    whole ones next to `drgrpo/trained_entropy` from the others)."""
    score = DrGRPOTrainer._generate_and_score_completions

    def with_odd_key(self, inputs):
        output = score(self, inputs)
        if self.state.global_step == 0:
            output["odd_key"] = torch.zeros(output["completion_ids"].size(0))
        return output

    monkeypatch.setattr(DrGRPOTrainer, "_generate_and_score_completions", with_odd_key)
    trl, ours, trl_shapes, our_shapes = _compare(tmp_path, model_and_tokenizer)  # two rollouts
    half = len(trl_shapes) // 2
    assert our_shapes[:half] == trl_shapes[:half] and our_shapes[half:] != trl_shapes[half:]
    _assert_trl_metrics(trl, ours, rows_left_out=True)


def test_trl_metrics_with_kl_and_grouping(tmp_path, model_and_tokenizer):
    """beta > 0: no row left out, micro-batches grouped by length: `entropy` and `kl` are TRL's values."""
    trl, ours, *_ = _compare(tmp_path, model_and_tokenizer, beta=0.5, num_iterations=2, epsilon=0.02)
    assert ours._group_rows and not ours._skip_zero_rows
    _assert_trl_metrics(trl, ours, rows_left_out=False)


def _bf16_run(trainer_cls, config_cls, model_and_tokenizer, tmp_path, bf16: bool):
    """Train 1 optimizer step (3 micro-batches of a 6-micro-batch rollout, so TRL computes
    old_per_token_logps at generation time); return the step's gradient and, per micro-batch, the largest
    |log-prob - old log-prob| over its tokens (0: a ratio of exactly 1)."""
    model, tok = model_and_tokenizer
    recorder = GradientRecorder()
    trainer = trainer_cls(
        model=copy.deepcopy(model),
        reward_funcs=[parity_reward, odd_reward],
        args=_args(config_cls, tmp_path, bf16=bf16, max_steps=1),
        train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
        processing_class=tok,
        rollout_func=varied_rollout,
        callbacks=[recorder],
    )
    recorder.model = trainer.model
    deviations, current = [], {}
    inner_loss, inner_logps = trainer._compute_loss, trainer._get_per_token_logps_and_entropies

    def loss(model, inputs):
        current["inputs"] = inputs
        try:
            return inner_loss(model, inputs)
        finally:
            current.clear()

    def logps(*args, **kwargs):
        out = inner_logps(*args, **kwargs)
        if current:
            inputs = current["inputs"]
            gap = (out[0].detach().float() - inputs["old_per_token_logps"].float()).abs()
            deviations.append(float((gap * inputs["completion_mask"]).max()))
        return out

    trainer._compute_loss, trainer._get_per_token_logps_and_entropies = loss, logps
    torch.manual_seed(0)
    trainer.train()
    (grads,) = recorder.steps
    return torch.cat([g.flatten().double() for g in grads.values()]), deviations


def test_bf16_first_pass_ratio_is_one_and_gradient_within_bf16_rounding(tmp_path, model_and_tokenizer):
    """bf16 (CPU autocast): TRL's first pass over a rollout has a ratio of exactly 1 (old log-probs computed
    with its training shapes); so does the trimmed path (old log-probs recomputed with the trimmed shapes).
    Tolerance of the gradient: two bf16 evaluations of the same gradient differ by at most the sum of their
    errors, each of the size of TRL's own bf16 error (against fp32): we allow 2x TRL's, measured here."""
    runs = {
        name: _bf16_run(t, c, model_and_tokenizer, tmp_path / name, bf16)
        for name, t, c, bf16 in (
            ("trl32", GRPOTrainer, GRPOConfig, False),
            ("trl16", GRPOTrainer, GRPOConfig, True),
            ("ours16", DrGRPOTrainer, DrGRPOConfig, True),
        )
    }
    (g32, _), (g_trl, dev_trl), (g_ours, dev_ours) = runs["trl32"], runs["trl16"], runs["ours16"]
    trl_error = ((g_trl - g32).norm() / g32.norm()).item()
    ours_vs_trl = ((g_ours - g_trl).norm() / g_trl.norm()).item()
    print(
        f"bf16: gradient TRL vs fp32 {trl_error:.3g}, ours vs TRL {ours_vs_trl:.3g}; first pass max |dlogp|"
    )
    print(f"  TRL {max(dev_trl)}, ours {max(dev_ours)}")
    assert len(dev_trl) == len(dev_ours) == 3
    assert max(dev_trl) == 0.0, dev_trl  # TRL's property
    assert max(dev_ours) == 0.0, dev_ours
    assert 0 < trl_error < 0.1
    assert ours_vs_trl <= 2 * trl_error


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


def test_position_rule_is_found_by_a_check_forward(
    model_and_tokenizer, absolute_positions_model, mask_positions_model
):
    from trl_drgrpo.training.positions import length_dependent_rope, position_rule

    cpu = torch.device("cpu")
    assert position_rule(model_and_tokenizer[0], 512, cpu) == "arange"  # Qwen2 (RoPE)
    assert position_rule(absolute_positions_model[0], 512, cpu) == "arange"  # GPT-2 (learned, absolute)
    assert position_rule(mask_positions_model[0], 512, cpu) == "mask"  # OPT (cumsum of the mask)

    class Ignores(torch.nn.Module):  # positions from its own arange, whatever it is given
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(512, 4)
            self.position = torch.nn.Embedding(16, 4)

        def forward(self, input_ids, attention_mask, position_ids=None):
            hidden = self.embed(input_ids) + self.position(torch.arange(input_ids.size(1)))
            return type("Out", (), {"logits": hidden})

    class Reversed(Ignores):  # positions counted from the right: neither rule
        def forward(self, input_ids, attention_mask, position_ids=None):
            if position_ids is None:
                position_ids = torch.arange(input_ids.size(1)).flip(0)
            return type("Out", (), {"logits": self.embed(input_ids) + self.position(position_ids)})

    assert position_rule(Ignores(), 512, cpu) == "ignored"
    assert position_rule(Reversed(), 512, cpu) is None
    assert length_dependent_rope(model_and_tokenizer[0]) == []


def test_token_metrics_count_left_out_rows_as_unclipped():
    from trl_drgrpo.training import token_metrics as tm

    batch = _batch([2, 2, 2], [3, 2, 0], [1.0, 0.0, -1.0])
    old = torch.zeros(3, 8)
    batch["old_per_token_logps"] = old
    logps = torch.zeros(3, 8)
    logps[0, :2] = 0.5  # ratio e^0.5 > 1 + eps on 2 of row 0's 3 tokens (positive advantage: clipped)
    run = torch.tensor([0, 2])
    stats = tm.untrained_row_stats(batch, "token")
    stats[run] = tm.row_stats(
        logps[run],
        torch.ones(2, 8),
        batching.select_rows(batch, run),
        epsilon_low=0.2,
        epsilon_high=0.2,
        delta=None,
        level="token",
        beta=0.0,
        bias_correction_kl=False,
        entropy_rows=torch.tensor([True, True]),
    )
    merged = tm.merge(tm.per_batch(torch.tensor([0, 0, 1]), stats, 3).unsqueeze(0).repeat(2, 1, 1))
    values = tm.logged_values(merged[0], clip=True, kl=False, entropy_name="entropy")
    assert values["clip_ratio/high_mean"] == pytest.approx(2 / 5)  # row 1's 2 tokens count, unclipped
    assert values["clip_ratio/high_max"] == pytest.approx(2 / 3) and values["clip_ratio/low_min"] == 0.0
    assert values["entropy"] == 1.0  # only rows run (left-out rows: weight 0)
    assert math.isnan(
        tm.logged_values(merged[1], clip=True, kl=False, entropy_name="entropy")["clip_ratio/low_min"]
    )
    assert merged[2, tm.PRESENT] == 0  # no row: nothing logged for it


def test_training_draws_are_found_by_check_forwards(model_and_tokenizer):
    from trl_drgrpo.training.randomness import training_draws

    cpu = torch.device("cpu")

    class Tiny(torch.nn.Module):
        def __init__(self, draw=None):
            super().__init__()
            self.embed, self.draw = torch.nn.Embedding(512, 4), draw

        def forward(self, input_ids, attention_mask):
            hidden = self.embed(input_ids)
            if self.training and self.draw is not None:
                hidden = self.draw(hidden)
            return type("Out", (), {"logits": hidden})

    def skip_half(hidden):  # one draw per forward (layer drop)
        return hidden if torch.rand([]) < 0.5 else 2 * hidden

    models = [model_and_tokenizer[0], Tiny(), Tiny(skip_half), Tiny(torch.nn.Dropout(0.5))]
    state = torch.get_rng_state()
    # Qwen2 (attention dropout 0), no draw, one draw per forward, dropout
    assert [training_draws(m, 512, cpu) for m in models] == ["none", "none", "same", "shape"]
    assert torch.equal(state, torch.get_rng_state()), "the check must leave the generator as it was"
