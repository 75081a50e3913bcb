"""The synthetic arithmetic task and its worked examples."""

from __future__ import annotations

import pytest

from trl_drgrpo import get_template
from trl_drgrpo.demo.synthetic import (
    all_problems,
    make_arithmetic_dataset,
    parse_problem,
    pretraining_examples,
    pretraining_texts,
    train_test_split_problems,
    worked_example,
)
from trl_drgrpo.rewards.grader import grade


def _truth(problem: str) -> int:
    a, op, b = parse_problem(problem)
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def test_dataset_columns_and_answers():
    data = make_arithmetic_dataset(200, seed=3)
    assert data.column_names == ["problem", "answer"] and len(data) == 200
    for problem, answer in zip(data["problem"], data["answer"], strict=True):
        assert isinstance(answer, str) and int(answer) == _truth(problem) and int(answer) >= 0
    assert {parse_problem(p)[1] for p in data["problem"]} == {"+", "-", "*"}


def test_dataset_deterministic_and_seeded():
    assert make_arithmetic_dataset(50, seed=1)[:] == make_arithmetic_dataset(50, seed=1)[:]
    assert make_arithmetic_dataset(50, seed=1)[:] != make_arithmetic_dataset(50, seed=2)[:]


def test_dataset_options():
    data = make_arithmetic_dataset(100, ops=("*",), max_mul_operand=3)
    assert all(
        p.split()[3] == "*" and int(a) <= 9 for p, a in zip(data["problem"], data["answer"], strict=True)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -1}, "n must be"),
        ({"n": 3, "ops": ("/",)}, "ops must be"),
        ({"n": 3, "max_operand": 0}, "max_operand"),
    ],
)
def test_dataset_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_arithmetic_dataset(**kwargs)


def test_parse_problem_rejects_other_text():
    with pytest.raises(ValueError, match="expected a problem like"):
        parse_problem("How much is 3 plus 4?")


@pytest.mark.parametrize("style", [0, 1, 2])
def test_worked_example_is_graded_correct(style):
    text = worked_example("What is 7 * 8?", "56", "no", style=style)
    assert text.startswith("What is 7 * 8? ") and text.endswith("\\boxed{56}.<|endoftext|>")
    assert grade(text.removeprefix("What is 7 * 8?").removesuffix("<|endoftext|>"), "56", "no") == 1.0


def test_worked_example_wrong_or_unboxed_is_graded_wrong():
    wrong = worked_example("What is 7 * 8?", 57, "no")
    unboxed = worked_example("What is 7 * 8?", 56, "no", boxed=False)
    assert grade(wrong, "56", "no") == 0.0
    assert "\\boxed" not in unboxed and grade(unboxed, "56", "no") == 0.0


def test_worked_example_with_chat_template():
    text = worked_example("What is 1 + 1?", "2", "qwen_math", eos="<|im_end|>")
    assert text.startswith(get_template("qwen_math").format("What is 1 + 1?"))
    assert text.endswith("\\boxed{2}.<|im_end|>")


def test_pretraining_corpus_rates():
    examples = pretraining_examples(2000, seed=0, error_rate=0.6, unboxed_rate=0.2, max_operand=9)
    correct = boxed = 0
    for prompt, completion in examples:
        gold = _truth(prompt)
        boxed += "\\boxed" in completion
        correct += grade(completion, str(gold), "no") == 1.0
        assert f"= {gold}." in completion or f"= {gold + 1}." in completion
    # P(correct and boxed) = 0.4 * 0.8 = 0.32
    assert 0.28 < correct / len(examples) < 0.36
    assert 0.76 < boxed / len(examples) < 0.84
    assert pretraining_texts(5, seed=0) == [p + c for p, c in pretraining_examples(5, seed=0)]


def test_pretraining_rates_validated():
    with pytest.raises(ValueError, match="error_rate"):
        pretraining_examples(3, error_rate=1.5)


def test_all_problems_and_split():
    rows = all_problems(max_operand=9, max_mul_operand=9)
    assert len(rows) == 100 + 55 + 100 == len(set(rows))
    train, test = train_test_split_problems(64, seed=0, max_operand=9, max_mul_operand=9)
    assert len(test) == 64 and len(train) == len(rows) - 64
    assert not set(train["problem"]) & set(test["problem"])
    again, _ = train_test_split_problems(64, seed=0, max_operand=9, max_mul_operand=9)
    assert again[:] == train[:]
    with pytest.raises(ValueError, match="n_test"):
        train_test_split_problems(len(rows), max_operand=9, max_mul_operand=9)


def test_fact_drills_are_correct_and_mixed_in():
    examples = pretraining_examples(400, seed=1, drill_fraction=0.5, drill_size=5, max_operand=9)
    drills = [c for p, c in examples if p == ""]
    assert 150 < len(drills) < 250
    for drill in drills:
        lines = drill.removesuffix("<|endoftext|>").split("\n")
        assert len(lines) == 5
        for line in lines:
            question, result = line.split(" = ")
            assert int(result) == _truth(f"What is {question}?")
    with pytest.raises(ValueError, match="drill_size"):
        pretraining_examples(3, drill_size=0)


def test_varied_solution_length_follows_correctness():
    import random

    from trl_drgrpo.demo.synthetic import varied_solution

    rng = random.Random(0)
    right = [varied_solution(3, "+", 4, 7, rng, steps_rate=1.0, ramble_rate=1.0) for _ in range(20)]
    wrong = [varied_solution(3, "+", 4, 8, rng, steps_rate=1.0, ramble_rate=1.0) for _ in range(20)]
    assert all(s.startswith("3 + 4 = \\boxed{7}.") and "step by step" in s for s in right)
    assert all(s.startswith("3 + 4 = \\boxed{8}.") and "step by step" not in s for s in wrong)
    assert len({len(s) for s in wrong}) > 1  # rambles vary in length
    plain = varied_solution(3, "+", 4, 8, rng, boxed=False)
    assert plain == "3 + 4 = 8."
    # the length never changes the reward: the boxed answer decides
    assert all(grade(s, "7", "no") == 1.0 for s in right)
    assert all(grade(s, "7", "no") == 0.0 for s in wrong)


def test_pretraining_examples_with_varied_lengths():
    import re

    kwargs = {"error_rate": 0.5, "steps_rate": 0.5, "ramble_rate": 1.0, "max_operand": 9}
    examples = pretraining_examples(200, seed=4, **kwargs)
    assert examples == pretraining_examples(200, seed=4, **kwargs)
    for prompt, completion in examples:
        a, op, b = parse_problem(prompt.strip())
        stated = int(re.match(r" \d+ . \d+ = (?:\\boxed\{)?(\d+)", completion).group(1))
        rambles = any(f in completion for f in ("Hmm", "hmm", "Let me check", "Maybe"))
        assert rambles == (stated != _truth(prompt.strip()))  # ramble_rate 1: every slip rambles
    with pytest.raises(ValueError, match="ramble_continue"):
        pretraining_examples(2, ramble_rate=0.5, ramble_continue=1.0)
