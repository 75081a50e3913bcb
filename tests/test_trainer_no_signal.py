"""No silent no-op: truncation at the budget edge, and loud warnings when rollouts carry no learning signal."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer
from trl_drgrpo.trainer import NoLearningSignalWarning

BUDGET = 12
GROUP = 4
QUESTIONS = ["1+1=", "2+3="]


def _filler(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(3, 200) for _ in range(n)]  # byte tokens: never EOS (0), never "</answer>"


def _rollout_of(make_completion):
    """A rollout_func whose i-th completion is `make_completion(i, tokenizer, rng)`."""

    def rollout(prompts: list[str], trainer) -> dict:
        tok, rng = trainer.processing_class, random.Random(0)
        return {
            "prompt_ids": [tok(p)["input_ids"] for p in prompts],
            "completion_ids": [make_completion(i, tok, rng) for i in range(len(prompts))],
            "logprobs": None,
        }

    return rollout


def always_one(completions, **kwargs) -> list[float]:
    return [1.0] * len(completions)


def text_length(completions, **kwargs) -> list[float]:
    return [float(len(c)) for c in completions]


def answer_one(completions, **kwargs) -> list[float]:
    return [1.0] * len(completions)


def answer_length(completions, **kwargs) -> list[float]:
    return [float(len(c)) for c in completions]


# Declared answer-checking, as MathReward is: truncated_completion_reward="auto" scores cut responses 0 on them.
answer_one.answer_reward = answer_length.answer_reward = True


def _trainer(
    tiny_model_dir, tmp_path, rollout, reward=always_one, questions=QUESTIONS, **overrides
) -> DrGRPOTrainer:
    values = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=GROUP * len(questions),
        num_generations=GROUP,
        max_completion_length=BUDGET,
        use_cpu=True,
        bf16=False,
        report_to=[],
        seed=0,
    )
    values.update(overrides)
    trainer = DrGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=reward,
        args=DrGRPOConfig(**values),
        train_dataset=Dataset.from_dict({"prompt": questions}),
        rollout_func=rollout,
    )
    trainer.model.train()
    return trainer


def _rollout_once(trainer, questions=QUESTIONS) -> tuple[dict, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = trainer._generate_and_score_completions(
            [{"prompt": q} for q in questions for _ in range(GROUP)]
        )
    return batch, [w for w in caught if issubclass(w.category, NoLearningSignalWarning)]


# ---------------------------------------------------------------------------- the budget edge
def _edge_completion(i: int, tok, rng: random.Random) -> list[int]:
    """0: EOS on the budget's last token; 1: "</answer>" ends on it; 2: cut by the budget; 3: ends early."""
    stop = tok(" </answer>", add_special_tokens=False)["input_ids"]
    kind = i % 4
    if kind == 0:
        return _filler(rng, BUDGET - 1) + [tok.eos_token_id]
    if kind == 1:
        return _filler(rng, BUDGET - len(stop)) + stop
    if kind == 2:
        return _filler(rng, BUDGET)
    return _filler(rng, 3) + [tok.eos_token_id]


@pytest.mark.parametrize("stop_strings", [["</answer>"], None])
def test_an_end_on_the_budgets_last_token_is_finished_not_truncated(tiny_model_dir, tmp_path, stop_strings):
    trainer = _trainer(
        tiny_model_dir, tmp_path, _rollout_of(_edge_completion), answer_one, stop_strings=stop_strings
    )
    batch, _ = _rollout_once(trainer)
    rewards_per_func, truncated, lengths = trainer._rollout
    kinds = torch.arange(len(truncated)) % 4
    assert torch.equal(lengths[kinds < 3], torch.full_like(lengths[kinds < 3], BUDGET))
    # EOS or the stop string exactly at the budget: finished (the paper: vLLM's finish_reason "stop")
    expected = (kinds == 2) | ((kinds == 1) & (stop_strings is None))
    assert torch.equal(truncated, expected)
    assert torch.equal(rewards_per_func[:, 0], (~expected).float())


def test_auto_scores_only_the_answer_checking_functions(tiny_model_dir, tmp_path):
    """Under "auto" a cut response scores 0 from answer-checking rewards; other functions keep their scores."""
    trainer = _trainer(tiny_model_dir, tmp_path, _rollout_of(_edge_completion), [answer_one, always_one])
    _rollout_once(trainer)
    rewards_per_func, truncated, _ = trainer._rollout
    assert truncated.any() and (~truncated).any()
    assert torch.equal(rewards_per_func[:, 0], (~truncated).float())
    assert torch.all(rewards_per_func[:, 1] == 1.0)
    assert trainer.truncation_rule == (
        "truncated_completion_reward='auto': 0 from answer_one; scores kept from always_one"
    )


@pytest.mark.parametrize(("setting", "value"), [(-1.0, -1.0), ("0.5", 0.5)])
def test_a_number_scores_every_function(tiny_model_dir, tmp_path, setting, value):
    trainer = _trainer(
        tiny_model_dir,
        tmp_path,
        _rollout_of(_edge_completion),
        [answer_one, always_one],
        truncated_completion_reward=setting,
    )
    _rollout_once(trainer)
    rewards_per_func, truncated, _ = trainer._rollout
    assert torch.all(rewards_per_func[truncated] == value) and torch.all(rewards_per_func[~truncated] == 1.0)


@pytest.mark.parametrize("setting", ["half", True, float("nan")])
def test_a_bad_truncation_setting_is_refused(tmp_path, setting):
    with pytest.raises(
        ValueError, match="truncated_completion_reward must be a finite number, 'auto' or none"
    ):
        DrGRPOConfig(output_dir=str(tmp_path), truncated_completion_reward=setting)


# ---------------------------------------------------------------------------- loud warnings
@pytest.mark.parametrize(
    ("reward", "setting", "named"),
    [
        (
            answer_length,
            "auto",
            "truncated_completion_reward='auto' scores them 0.0 (truncated_completion_reward=",
        ),
        (text_length, 0.0, "truncated_completion_reward=0.0 scores them 0.0"),
    ],
)
def test_truncation_reward_that_wipes_out_the_signal_warns_once(
    tiny_model_dir, tmp_path, reward, setting, named
):
    """Every response cut at a short budget, reward 0 for all: a warning that names the cause and the fix."""
    rollout = _rollout_of(lambda i, tok, rng: _filler(rng, BUDGET))
    trainer = _trainer(tiny_model_dir, tmp_path, rollout, reward, truncated_completion_reward=setting)
    batch, caught = _rollout_once(trainer)
    assert torch.all(batch["advantages"] == 0)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "100% of this rollout's completions hit max_completion_length=12" in message
    assert named in message and "every advantage is 0" in message
    assert "Raise max_completion_length" in message and "truncated_completion_reward=None" in message
    assert _rollout_once(trainer)[1] == []  # once


def test_nearly_all_truncated_warns_and_a_mostly_finished_rollout_does_not(tiny_model_dir, tmp_path):
    def nearly_all(i, tok, rng):  # 1 of 16 finishes
        return _filler(rng, 2) + [tok.eos_token_id] if i == 0 else _filler(rng, BUDGET)

    questions = QUESTIONS * 2
    trainer = _trainer(
        tiny_model_dir, tmp_path / "a", _rollout_of(nearly_all), answer_one, questions=questions
    )
    assert len(_rollout_once(trainer, questions)[1]) == 1

    def half(i, tok, rng):
        return _filler(rng, 2) + [tok.eos_token_id] if i % 2 else _filler(rng, BUDGET)

    trainer = _trainer(tiny_model_dir, tmp_path / "b", _rollout_of(half), answer_length)
    assert _rollout_once(trainer)[1] == []


@pytest.mark.parametrize(
    ("reward", "setting"),
    [
        (text_length, None),
        (answer_length, None),
        (text_length, "auto"),
    ],  # "auto": TRL's reward funcs keep scores
)
def test_no_warning_when_truncated_responses_keep_their_scores(tiny_model_dir, tmp_path, reward, setting):
    rollout = _rollout_of(lambda i, tok, rng: _filler(rng, BUDGET))
    trainer = _trainer(tiny_model_dir, tmp_path, rollout, reward, truncated_completion_reward=setting)
    batch, caught = _rollout_once(trainer)
    assert caught == [] and batch["advantages"].abs().sum() > 0


def test_consecutive_rollouts_without_spread_warn_once(tiny_model_dir, tmp_path):
    """Every response finished but all rewards equal: after `no_signal_patience` rollouts, one warning."""
    finished = _rollout_of(lambda i, tok, rng: _filler(rng, 3) + [tok.eos_token_id])
    trainer = _trainer(tiny_model_dir, tmp_path, finished, no_signal_patience=2)
    assert _rollout_once(trainer)[1] == []
    caught = _rollout_once(trainer)[1]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 consecutive rollouts without any group whose rewards differ" in message
    assert "the loss is 0 and no parameter moves" in message and "num_generations=4" in message
    assert _rollout_once(trainer)[1] == []  # once


def test_a_rollout_with_spread_resets_the_count(tiny_model_dir, tmp_path):
    calls = []

    def sometimes_flat(completions, **kwargs):
        calls.append(1)
        flat = len(calls) != 2  # rollouts 1 and 3 flat, rollout 2 has spread
        return [1.0] * len(completions) if flat else [float(i % 2) for i in range(len(completions))]

    finished = _rollout_of(lambda i, tok, rng: _filler(rng, 3) + [tok.eos_token_id])
    trainer = _trainer(tiny_model_dir, tmp_path, finished, sometimes_flat, no_signal_patience=2)
    assert [len(_rollout_once(trainer)[1]) for _ in range(3)] == [0, 0, 0]


@pytest.mark.slow
def test_training_with_a_short_budget_warns(tiny_model_dir, tmp_path):
    """TRL's usual short max_completion_length with an answer-checking reward under the paper's truncation rule."""
    token_id = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids("!")
    args = DrGRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=4,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to=[],
        seed=0,
        generation_kwargs={"sequence_bias": {(token_id,): 100.0}},  # never EOS
    )
    trainer = DrGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=answer_length,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": QUESTIONS * 2}),
    )
    with pytest.warns(NoLearningSignalWarning, match="max_completion_length=4"):
        trainer.train()


# ---------------------------------------------------------------------------- the context limit
def test_a_response_cut_by_the_context_limit_is_truncated(tiny_model_dir, tmp_path):
    """prompt + budget > the engine's context (vLLM's max_model_len): vLLM stops the response when prompt and
    response fill the context, shorter than the budget and without an end. It has no final answer: truncated,
    scored 0 by answer-checking rewards (the paper's rule), like a response cut by the budget."""
    room = 5  # context tokens left after the prompt, fewer than the budget

    def completion(i: int, tok, rng: random.Random) -> list[int]:
        return _filler(rng, room) if i % 2 == 0 else _filler(rng, 2) + [tok.eos_token_id]

    trainer = _trainer(tiny_model_dir, tmp_path, _rollout_of(completion), answer_one)
    prompt_length = len(trainer.processing_class(QUESTIONS[0])["input_ids"])
    assert prompt_length == len(trainer.processing_class(QUESTIONS[1])["input_ids"])
    trainer.model.config.max_position_embeddings = prompt_length + room  # stands in for vLLM's max_model_len
    assert trainer.context_limit() == prompt_length + room
    _rollout_once(trainer)
    rewards_per_func, truncated, lengths = trainer._rollout
    cut = torch.arange(len(truncated)) % 2 == 0
    assert torch.all(lengths[cut] == room) and room < BUDGET
    assert torch.equal(truncated, cut)
    assert torch.equal(rewards_per_func[:, 0], (~cut).float())
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == 0.5
