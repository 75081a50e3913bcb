"""DrGRPOTrainer through TRL's colocated vLLM path, on a real engine (vLLM's CPU build in `make test-vllm`).

One run per module: three Dr. GRPO steps of the twin (tests/vllm_twin.py) under the R1 template, with
``</answer>`` as stop string, a budget that cuts the longest answers, and TRL's importance-sampling correction on.
On the CPU build the run needs the test-only switch of ``trl_drgrpo/training/vllm_cpu.py`` (set by
``make test-vllm``): without it TRL's first weight push fails inside vLLM.
"""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from tests.run_args import cpu_run_args
from tests.vllm_twin import TAIL, training_problems
from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer
from trl_drgrpo.rewards import MathReward
from trl_drgrpo.templates import get_template

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# The twin's answers to its 8 problems take 20-39 tokens up to "</answer>": 26 finishes some on the budget's
# last token and cuts others.
BUDGET = 26
STEPS = 3


@pytest.fixture(scope="module")
def run(vllm_twin_dir, eval_suite_path, tmp_path_factory, vllm_platform_name):
    r1 = get_template("r1")
    rows = [{"prompt": r1.format(p), "answer": a} for _, p, a in training_problems(eval_suite_path)]
    args = cpu_run_args(
        DrGRPOConfig,
        tmp_path_factory.mktemp("vllm_run"),
        use_cpu=vllm_platform_name == "cpu",
        use_vllm=True,
        vllm_mode="colocate",
        vllm_max_model_length=1024,
        vllm_importance_sampling_correction=True,
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=STEPS,
        max_completion_length=BUDGET,
        stop_strings=["</answer>"],
        temperature=0.7,
        learning_rate=1e-3,
        shuffle_dataset=False,
    )
    trainer = DrGRPOTrainer(
        model=vllm_twin_dir,
        reward_funcs=MathReward(template="r1", num_workers=0),
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    rollouts: list[dict] = []
    generate, rewards = trainer._generate_single_turn, trainer._calculate_rewards

    def record_generation(*a, **k):
        completion_ids, logprobs = generate(*a, **k)
        rollouts.append({"completion_ids": [list(ids) for ids in completion_ids], "logprobs": logprobs})
        return completion_ids, logprobs

    def record_rewards(inputs, *a, **k):
        out = rewards(inputs, *a, **k)
        per_func, truncated, _ = trainer._rollout
        golds = [x["answer"] for x in inputs]
        rollouts[-1].update(rewards=per_func[:, 0].tolist(), truncated=truncated.tolist(), golds=golds)
        return out

    trainer._generate_single_turn, trainer._calculate_rewards = record_generation, record_rewards
    trainer.train()
    return trainer, rollouts


def _texts(trainer, ids_list):
    return [trainer.processing_class.decode(ids, skip_special_tokens=True) for ids in ids_list]


def test_generation_went_through_vllm_with_the_stop_string(run):
    trainer, rollouts = run
    assert trainer.use_vllm and trainer.vllm_generation.llm is not None
    kwargs = trainer.vllm_generation.generation_kwargs
    assert "</answer>" in kwargs["stop"] and kwargs["include_stop_str_in_output"]
    assert len(rollouts) == STEPS and all(r["logprobs"] is not None for r in rollouts)


def test_responses_end_at_the_stop_string_or_the_budget(run):
    trainer, rollouts = run
    eos = set(trainer.eos_token_ids)
    edge = 0
    for r in rollouts:
        texts = _texts(trainer, r["completion_ids"])
        for ids, text, truncated in zip(r["completion_ids"], texts, r["truncated"], strict=True):
            assert TAIL.strip() not in text, text  # vLLM stopped at </answer>
            assert len(ids) <= BUDGET
            ended = text.endswith("</answer>") or (ids and ids[-1] in eos)
            assert truncated == (not ended), (text, len(ids), truncated)
            assert truncated == (len(ids) == BUDGET and not ended)
            edge += ended and len(ids) == BUDGET
    flags = [t for r in rollouts for t in r["truncated"]]
    assert any(flags) and not all(flags), "the budget must cut some responses and not others"
    assert edge, "a response whose </answer> falls on the budget's last token (finished, not truncated)"


def test_rewards_follow_the_truncation_rule_and_the_grader(run):
    trainer, rollouts = run
    grader = MathReward(template="r1", num_workers=0)
    for r in rollouts:
        for text, reward, truncated, gold in zip(
            _texts(trainer, r["completion_ids"]), r["rewards"], r["truncated"], r["golds"], strict=True
        ):
            expected = 0.0 if truncated else grader([text], answer=[gold])[0]
            assert reward == expected, (text, reward, truncated)
    assert any(x == 1.0 for r in rollouts for x in r["rewards"]), "the twin answers some of them right"


def training_problems_from(trainer):
    return [(i, row["prompt"], row["answer"]) for i, row in enumerate(trainer.train_dataset)]


def test_importance_sampling_correction_uses_vllms_logprobs(run):
    """vLLM's sampling logprobs match the trainer's own (float32, same weights): the IS ratio is ~1."""
    trainer, _ = run
    logs = [h for h in trainer.state.log_history if "sampling/sampling_logp_difference/max" in h]
    assert len(logs) == STEPS
    for h in logs:
        assert h["sampling/sampling_logp_difference/max"] < 1e-3, h
        assert abs(h["sampling/importance_sampling_ratio/mean"] - 1) < 1e-3, h


def test_loss_and_advantages_are_finite_and_the_policy_moved(run):
    trainer, _ = run
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert any(h.get("drgrpo/zero_std_group_fraction", 1.0) < 1.0 for h in trainer.state.log_history)


def _prompt_logprobs(llm, ids):
    from vllm import SamplingParams

    (out,) = llm.generate(
        [{"prompt_token_ids": ids}],
        SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0),
        use_tqdm=False,
    )
    return torch.tensor([next(iter(d.values())).logprob for d in out.prompt_logprobs[1:]])


def _hf_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.device)).logits[0, :-1].float()
    return (
        torch.log_softmax(logits, -1)
        .gather(1, torch.tensor(ids[1:], device=model.device)[:, None])[:, 0]
        .cpu()
    )


def test_weights_pushed_after_training_reach_vllm(run, vllm_twin_dir):
    """After a push, vLLM scores tokens with the trained weights (not the checkpoint's) and decodes greedily
    as transformers does."""
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams

    trainer, rollouts = run
    vg = trainer.vllm_generation
    vg.sync_weights()
    tokenizer = trainer.processing_class
    prompt = training_problems_from(trainer)[0][1]
    ids = tokenizer(prompt)["input_ids"] + rollouts[-1]["completion_ids"][0]
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    trained = _hf_logprobs(model, ids)
    initial = _hf_logprobs(AutoModelForCausalLM.from_pretrained(vllm_twin_dir).eval(), ids)
    served = _prompt_logprobs(vg.llm, ids)
    moved = (trained - initial).abs().max().item()
    gap = (served - trained).abs().max().item()
    print(f"after push: max |vLLM - trained| = {gap:.2e}; training moved logprobs by up to {moved:.2e}")
    assert gap < 1e-3 < moved
    prompts = [row[1] for row in training_problems_from(trainer)]
    greedy = vg.llm.generate(
        prompts, SamplingParams(temperature=0.0, max_tokens=40, stop=["</answer>"], include_stop_str_in_output=True),
        use_tqdm=False,
    )  # fmt: skip
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=40, do_sample=False, stop_strings=["</answer>"], tokenizer=tokenizer
        )
    hf = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    agree = sum(
        g.outputs[0].text == h[: len(g.outputs[0].text)] and g.outputs[0].text.endswith("</answer>")
        for g, h in zip(greedy, hf, strict=True)
    )
    print(f"greedy after push, vLLM = transformers: {agree}/{len(prompts)}")
    assert agree == len(prompts)
