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
from tests.vllm_twin import TAIL, training_problems, twin_completion
from trl_drgrpo import DrGRPOConfig, DrGRPOTrainer
from trl_drgrpo.evaluation.backends import TransformersBackend
from trl_drgrpo.evaluation.vllm_backend import VLLMBackend
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
        rollouts[-1].update(completion_ids=[list(ids) for ids in completion_ids], logprobs=logprobs)
        return completion_ids, logprobs

    def record_rewards(inputs, *a, **k):
        out = rewards(inputs, *a, **k)
        per_func, truncated, _ = trainer._rollout
        golds = [x["answer"] for x in inputs]
        rollouts[-1].update(rewards=per_func[:, 0].tolist(), truncated=truncated.tolist(), golds=golds)
        return out

    llm_generate = trainer.vllm_generation.llm.generate

    def record_finish_reasons(*a, **k):
        outputs = llm_generate(*a, **k)
        rollouts.append({"finish_reasons": [o.finish_reason for out in outputs for o in out.outputs]})
        return outputs

    trainer._generate_single_turn, trainer._calculate_rewards = record_generation, record_rewards
    # Before training: how closely the engine scores the checkpoint it loaded (the precision of vLLM's kernels here)
    trainer.probe_ids = _probe_ids(trainer, eval_suite_path)
    served = _prompt_logprobs(trainer.vllm_generation.llm, trainer.probe_ids)
    reference = _hf_logprobs(trainer.model, trainer.probe_ids)
    trainer.initial_gap = (served - reference).abs()
    from transformers import AutoModelForCausalLM

    plain = _hf_logprobs(AutoModelForCausalLM.from_pretrained(vllm_twin_dir).eval(), trainer.probe_ids)
    print(f"before training: |trainer's model - from_pretrained| mean {(plain - reference).abs().mean():.2e}")
    trainer.vllm_generation.llm.generate = record_finish_reasons
    trainer.train()
    trainer.vllm_generation.llm.generate = llm_generate
    return trainer, rollouts


def _probe_ids(trainer, suite) -> list[int]:
    """A training prompt and the twin's answer to it, as token ids."""
    _, problem, answer = training_problems(suite)[0]
    tokenizer = trainer.processing_class
    return (
        tokenizer(get_template("r1").format(problem))["input_ids"]
        + tokenizer(twin_completion(answer))["input_ids"]
    )


def _texts(trainer, ids_list):
    return [trainer.processing_class.decode(ids, skip_special_tokens=True) for ids in ids_list]


def test_generation_went_through_vllm_with_the_stop_string(run):
    trainer, rollouts = run
    assert trainer.use_vllm and trainer.vllm_generation.llm is not None
    kwargs = trainer.vllm_generation.generation_kwargs
    assert "</answer>" in kwargs["stop"] and kwargs["include_stop_str_in_output"]
    assert len(rollouts) == STEPS and all(r["logprobs"] is not None for r in rollouts)


def test_truncation_is_vllms_finish_reason_length(run):
    """The trainer's truncation flag (read from the token ids) is vLLM's finish_reason "length", response by
    response; every response ends at ``</answer>`` (vLLM stopped there), at EOS or at the budget."""
    trainer, rollouts = run
    eos = set(trainer.eos_token_ids)
    for r in rollouts:
        assert r["truncated"] == [reason == "length" for reason in r["finish_reasons"]]
        texts = _texts(trainer, r["completion_ids"])
        for ids, text, reason in zip(r["completion_ids"], texts, r["finish_reasons"], strict=True):
            assert TAIL.strip() not in text, text  # vLLM stopped at </answer>
            assert len(ids) <= BUDGET
            ended = text.endswith("</answer>") or ids[-1] in eos
            assert (reason == "stop") == ended and (reason == "length") == (len(ids) == BUDGET and not ended)
    reasons = [x for r in rollouts for x in r["finish_reasons"]]
    edge = sum(
        len(ids) == BUDGET and not t
        for r in rollouts
        for ids, t in zip(r["completion_ids"], r["truncated"], strict=True)
    )
    print(
        f"finish reasons: {reasons.count('stop')} stop, {reasons.count('length')} length, {edge} on the budget edge"
    )
    assert "stop" in reasons and "length" in reasons


def test_budget_edge_on_vllms_own_outputs(run):
    """A response whose ``</answer>`` ends on the budget's last token is finished for vLLM (finish_reason "stop")
    and for the trainer; one token less is "length" and truncated. Greedy, through the trainer's engine and its
    generation settings (stop strings included)."""
    from vllm import SamplingParams

    trainer, _ = run
    vg = trainer.vllm_generation
    kwargs = {k: v for k, v in vg.generation_kwargs.items() if k in ("stop", "include_stop_str_in_output")}
    tokenizer = trainer.processing_class
    prompts = [
        {"prompt_token_ids": tokenizer(row[1])["input_ids"]} for row in training_problems_from(trainer)
    ]
    full = vg.llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=64, **kwargs), use_tqdm=False)
    budget = trainer.max_completion_length
    try:
        for prompt, out in zip(prompts, full, strict=True):
            length = len(out.outputs[0].token_ids)
            assert out.outputs[0].finish_reason == "stop" and out.outputs[0].text.endswith("</answer>")
            for max_tokens, reason in ((length, "stop"), (length - 1, "length")):
                (o,) = vg.llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=max_tokens, **kwargs),
                                       use_tqdm=False)[0].outputs  # fmt: skip
                trainer.max_completion_length = max_tokens
                assert o.finish_reason == reason and trainer._is_truncated(list(o.token_ids)) == (
                    reason == "length"
                )
    finally:
        trainer.max_completion_length = budget


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
    """TRL's IS correction gets vLLM's sampling logprobs: they match the trainer's own recomputation (float32,
    same weights) to vLLM's CPU kernels' precision, at every step (so also after each weight push)."""
    trainer, _ = run
    logs = [h for h in trainer.state.log_history if "sampling/sampling_logp_difference/max" in h]
    assert len(logs) == STEPS
    for h in logs:
        print({k: round(v, 5) for k, v in h.items() if k.startswith("sampling/")})
        assert h["sampling/sampling_logp_difference/mean"] < 5e-3, h
        assert abs(h["sampling/importance_sampling_ratio/mean"] - 1) < 0.02, h


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

    trainer, _ = run
    vg = trainer.vllm_generation
    vg.sync_weights()
    ids = trainer.probe_ids
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    trained = _hf_logprobs(model, ids)
    initial = _hf_logprobs(AutoModelForCausalLM.from_pretrained(vllm_twin_dir).eval(), ids)
    served = _prompt_logprobs(vg.llm, ids)
    gap, stale, before = (served - trained).abs(), (served - initial).abs(), trainer.initial_gap
    print(
        f"|vLLM - transformers| before training: mean {before.mean():.2e} max {before.max():.2e}; after the push: "
        f"mean {gap.mean():.2e} max {gap.max():.2e}; |vLLM - initial checkpoint| after: mean {stale.mean():.2e} "
        f"max {stale.max():.2e} ({len(ids) - 1} tokens)"
    )
    # The push is as exact as the engine's own reading of the checkpoint, and far from the checkpoint it started from
    assert gap.mean() < 1.5 * before.mean() + 1e-4 and gap.mean() < 0.05 * stale.mean()
    prompts = [row[1] for row in training_problems_from(trainer)]
    stops = ("</answer>",)
    served = VLLMBackend(llm=vg.llm, show_progress=False).generate(prompts, 1, 0.0, 1.0, 40, stops, 0)
    reference = TransformersBackend(model, trainer.processing_class, show_progress=False).generate(
        prompts, 1, 0.0, 1.0, 40, stops, 0
    )
    agree = sum(v == t for v, t in zip(served, reference, strict=True))
    print(f"greedy after the push, vLLM = transformers: {agree}/{len(prompts)}")
    assert agree == len(prompts)
