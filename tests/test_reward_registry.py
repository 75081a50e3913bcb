"""Rewards by name: the registry, plain Math-Verify in the pool, user functions, and the evaluation's use of them."""

from __future__ import annotations

import json

import pytest

from trl_drgrpo.evaluation.backends import Generation
from trl_drgrpo.rewards import (
    available_rewards,
    build_reward,
    get_grade_fn,
    math_verify_grade,
    register_reward,
)


def always_one(answer: str, gold) -> float:
    """Test-only grading function: every extracted answer is right."""
    return 1.0


class BoxedBackend:
    """Answers every prompt with a fixed response per call order."""

    def __init__(self, responses: list[str]):
        self.responses = responses

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed):
        return [
            [Generation(self.responses[i % len(self.responses)], 5, True)] * n for i in range(len(prompts))
        ]


def test_builtin_names():
    assert {"math", "math_verify"} <= set(available_rewards())
    assert get_grade_fn("math_verify") is math_verify_grade
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        build_reward("nope")
    with pytest.raises(ValueError, match="cannot import"):
        get_grade_fn("no_such_module_x:fn")


def test_math_verify_runs_in_the_pool_with_the_paper_rules():
    with build_reward("math_verify", template="r1", num_workers=1, timeout_s=5.0) as reward:
        assert reward.__name__ == "math_verify_reward"
        completions = [
            " ok </think> <answer> \\frac{1}{2} </answer>",
            " ok </think>\n<answer> 0.5 </answer>",  # not the paper's literal "</think> <answer>"
            " ok </think> <answer> 3 </answer>",
        ]
        assert reward(completions, answer=["0.5", "0.5", "0.5"]) == [1.0, 0.0, 0.0]
        assert reward._pool is not None  # graded in the killable pool


def test_user_function_by_name_and_by_path():
    register_reward("test_always_one", always_one, overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_always_one", always_one)
    for name in ("test_always_one", "tests.test_reward_registry:always_one"):
        reward = build_reward(name, num_workers=0)
        assert reward([r"\boxed{x}", "no box"], answer=["1", "1"]) == [1.0, 0.0]


def test_evaluation_grades_with_the_named_reward_and_states_it(tmp_path):
    from datasets import Dataset, DatasetDict

    from trl_drgrpo.evaluation import evaluate

    data = tmp_path / "suite"
    DatasetDict(
        {"math": Dataset.from_dict({"problem": ["1+1?", "2+2?"], "answer": ["2", "4"]})}
    ).save_to_disk(str(data))
    responses = [r"so \boxed{2}", r"the answer is \boxed 4"]  # the second is not the paper's \boxed{
    for answer_format, accuracy in (("paper", 0.5), ("lenient", 1.0)):
        out = tmp_path / answer_format
        summary = evaluate(
            "fake-model",
            "qwen_math",
            "math",
            BoxedBackend(responses),
            out,
            data=str(data),
            answer_format=answer_format,
            show_progress=False,
        )
        assert summary["benchmarks"]["math"]["accuracy"] == accuracy
        assert summary["reward"] == "math" and summary["answer_format"] == answer_format
        saved = json.loads((out / "summary.json").read_text())
        assert saved["config"]["answer_format"] == answer_format and saved["config"]["reward"] == "math"
    with pytest.raises(ValueError, match="answer_format"):
        evaluate(
            "fake-model",
            "qwen_math",
            "math",
            BoxedBackend(responses),
            tmp_path / "x",
            data=str(data),
            answer_format="loose",
            show_progress=False,
        )


def test_script_and_evaluation_arguments_carry_the_reward_settings():
    from trl_drgrpo.config import DrGRPOScriptArguments
    from trl_drgrpo.evaluation import EvaluationArguments

    script = DrGRPOScriptArguments(dataset_name="x")
    assert (script.reward, script.answer_format) == ("math", "paper")
    kwargs = EvaluationArguments(model="m").to_kwargs()
    assert (kwargs["reward"], kwargs["answer_format"]) == ("math", "paper")
