"""A small synthetic arithmetic task with gold answers, and worked examples to pretrain on.

Problems read ``"What is 37 + 48?"`` (addition, subtraction with a non-negative result, small
multiplication); the gold answer is the integer as a string, so ``trl_drgrpo.rewards.grader`` can check a
``\\boxed{}`` answer against it.

``pretraining_texts`` writes worked solutions in a few styles, and deliberately corrupts some of them
(a systematic slip of the answer, or a final answer left out of ``\\boxed{}``), so that a model
pretrained on them starts with partial accuracy and reinforcement learning has something to fix.

With ``steps_rate`` / ``ramble_rate`` the solutions also vary in length (the bias lab's task): a correct
solution may carry a worked check, and a slipped one may ramble (a geometric number of filler sentences)
after its answer, so response length is a real degree of freedom that RL can move, as in R1-Zero
runs where wrong responses grow long.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from datasets import Dataset

from ..templates import Template, get_template

OPERATORS = ("+", "-", "*")
# The equation always comes first, right after the question (a fixed distance to copy the operands from,
# which a tiny model learns quickly); the styles differ in the text after it, hence in length.
_STYLES = (
    "{a} {op} {b} = {r}. The answer is {final}.",
    "{a} {op} {b} = {r}. So the final answer is {final}.",
    "{a} {op} {b} = {r}. Let's check this step by step: the result stays the same. Therefore, the answer is {final}.",
)


# What a length-varying solution may carry after its answer.
_WORKED_STEPS = "Let's check this step by step: {a} {op} {b} gives {r}, and the result stays the same."
_FILLERS = ("Hmm, wait.", "Let me check again.", "Maybe it is right.", "So, hmm.")


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"operator must be one of {OPERATORS}, got {op!r}")


def _draw(
    rng: random.Random, ops: Sequence[str], max_operand: int, max_mul_operand: int
) -> tuple[int, str, int]:
    op = rng.choice(list(ops))
    hi = max_mul_operand if op == "*" else max_operand
    a, b = rng.randint(0, hi), rng.randint(0, hi)
    if op == "-" and b > a:
        a, b = b, a
    return a, op, b


def _check_options(ops: Sequence[str], max_operand: int, max_mul_operand: int) -> None:
    bad = [op for op in ops if op not in OPERATORS]
    if not ops or bad:
        raise ValueError(f"ops must be a non-empty subset of {OPERATORS}, got {tuple(ops)!r}")
    if max_operand < 1 or max_mul_operand < 1:
        raise ValueError(
            f"max_operand and max_mul_operand must be >= 1, got {max_operand}, {max_mul_operand}"
        )


def format_problem(a: int, op: str, b: int) -> str:
    """The question text for ``a op b``."""
    return f"What is {a} {op} {b}?"


def parse_problem(problem: str) -> tuple[int, str, int]:
    """Inverse of ``format_problem``: ``"What is 3 + 4?"`` -> ``(3, "+", 4)``."""
    parts = problem.strip().removeprefix("What is ").removesuffix("?").split()
    if len(parts) != 3 or parts[1] not in OPERATORS:
        raise ValueError(f"expected a problem like 'What is 3 + 4?', got {problem!r}")
    try:
        return int(parts[0]), parts[1], int(parts[2])
    except ValueError as err:
        raise ValueError(f"expected integer operands in {problem!r}") from err


def make_arithmetic_dataset(
    n: int,
    seed: int = 0,
    *,
    ops: Sequence[str] = OPERATORS,
    max_operand: int = 20,
    max_mul_operand: int = 9,
) -> Dataset:
    """``n`` random problems as a ``Dataset`` with columns ``problem`` (str) and ``answer`` (str)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_options(ops, max_operand, max_mul_operand)
    rng = random.Random(seed)
    rows = [_draw(rng, ops, max_operand, max_mul_operand) for _ in range(n)]
    return Dataset.from_dict(
        {
            "problem": [format_problem(a, op, b) for a, op, b in rows],
            "answer": [str(_apply(a, op, b)) for a, op, b in rows],
        }
    )


def all_problems(
    *, ops: Sequence[str] = OPERATORS, max_operand: int = 20, max_mul_operand: int = 9
) -> list[tuple[str, str]]:
    """Every distinct ``(problem, answer)`` of the task, in a fixed order."""
    _check_options(ops, max_operand, max_mul_operand)
    rows = []
    for op in OPERATORS:
        if op not in ops:
            continue
        hi = max_mul_operand if op == "*" else max_operand
        for a in range(hi + 1):
            for b in range(hi + 1):
                if op == "-" and b > a:
                    continue
                rows.append((format_problem(a, op, b), str(_apply(a, op, b))))
    return rows


def train_test_split_problems(
    n_test: int,
    seed: int = 0,
    *,
    ops: Sequence[str] = OPERATORS,
    max_operand: int = 20,
    max_mul_operand: int = 9,
) -> tuple[Dataset, Dataset]:
    """All distinct problems, shuffled and split into disjoint ``(train, test)`` sets; ``test`` has ``n_test``."""
    rows = all_problems(ops=ops, max_operand=max_operand, max_mul_operand=max_mul_operand)
    if not 0 < n_test < len(rows):
        raise ValueError(
            f"n_test must be in [1, {len(rows) - 1}] for this task ({len(rows)} problems), got {n_test}"
        )
    random.Random(seed).shuffle(rows)

    def to_dataset(part: list[tuple[str, str]]) -> Dataset:
        return Dataset.from_dict({"problem": [p for p, _ in part], "answer": [a for _, a in part]})

    return to_dataset(rows[n_test:]), to_dataset(rows[:n_test])


def worked_example(
    problem: str,
    answer: str | int,
    template: str | Template = "no",
    *,
    style: int = 0,
    boxed: bool = True,
    eos: str = "<|endoftext|>",
) -> str:
    """Prompt (``template`` applied to ``problem``) followed by a short worked solution and ``eos``.

    The solution states ``answer`` (whatever it is: pass a wrong one to make a flawed example) and,
    when ``boxed``, ends with ``\\boxed{answer}``.
    """
    a, op, b = parse_problem(problem)
    final = f"\\boxed{{{answer}}}" if boxed else str(answer)
    solution = _STYLES[style % len(_STYLES)].format(a=a, op=op, b=b, r=answer, final=final)
    return get_template(template).format(problem) + " " + solution + eos


def varied_solution(
    a: int,
    op: str,
    b: int,
    stated: int,
    rng: random.Random,
    *,
    boxed: bool = True,
    steps_rate: float = 0.0,
    ramble_rate: float = 0.0,
    ramble_continue: float = 0.5,
    result_first: bool = False,
) -> str:
    """A solution of ``a op b`` stating ``stated``, with a length that varies (the bias lab's responses).

    The (boxed) answer comes first, as the result of the equation, so the arithmetic is the drills' own
    ``a op b = r``; what follows it sets the length: a worked check after a correct answer with probability
    ``steps_rate``, filler sentences after a wrong one (a slip) with probability ``ramble_rate`` (one, then
    each further one with probability ``ramble_continue``). The choice is made knowing the answer, as a
    model could, and it does not change the reward: length is free. With ``result_first`` the true result
    comes first and the answer is boxed after it (``7 * 8 = 56. \\boxed{57}.``): a slip is then visible in
    the response itself, so a model can condition the stop/continue decision on it (the decision lab).
    """
    final = f"\\boxed{{{stated}}}" if boxed else str(stated)
    parts = [f"{a} {op} {b} = {_apply(a, op, b)}. {final}." if result_first else f"{a} {op} {b} = {final}."]
    if stated == _apply(a, op, b):
        if rng.random() < steps_rate:
            parts.append(_WORKED_STEPS.format(a=a, op=op, b=b, r=stated))
    elif rng.random() < ramble_rate:
        parts.append(rng.choice(_FILLERS))
        while rng.random() < ramble_continue:
            parts.append(rng.choice(_FILLERS))
    return " ".join(parts)


def fact_drill(
    k: int,
    rng: random.Random,
    *,
    ops: Sequence[str] = OPERATORS,
    max_operand: int = 20,
    max_mul_operand: int = 9,
) -> str:
    """``k`` correct facts, one a line (``"3 + 4 = 7"``): dense arithmetic knowledge for pretraining."""
    rows = [_draw(rng, ops, max_operand, max_mul_operand) for _ in range(k)]
    return "\n".join(f"{a} {op} {b} = {_apply(a, op, b)}" for a, op, b in rows)


def pretraining_examples(
    n: int,
    seed: int = 0,
    *,
    template: str | Template = "no",
    error_rate: float = 0.6,
    error_offset: int = 1,
    unboxed_rate: float = 0.2,
    drill_fraction: float = 0.0,
    drill_size: int = 8,
    steps_rate: float = 0.0,
    ramble_rate: float = 0.0,
    ramble_continue: float = 0.5,
    result_first: bool = False,
    ops: Sequence[str] = OPERATORS,
    max_operand: int = 20,
    max_mul_operand: int = 9,
    eos: str = "<|endoftext|>",
) -> list[tuple[str, str]]:
    """``n`` pretraining documents as ``(prompt, completion)``; see ``pretraining_texts``.

    A fraction ``drill_fraction`` of them are fact drills (empty prompt, ``drill_size`` correct facts):
    the corpus then teaches the arithmetic itself correctly, and the slips are a habit of the worked
    solutions only, which is what reinforcement learning can undo. With ``steps_rate`` or ``ramble_rate``
    above 0 the solutions are those of ``varied_solution`` (lengths vary), else the fixed styles.
    """
    for name, rate in (
        ("error_rate", error_rate),
        ("unboxed_rate", unboxed_rate),
        ("drill_fraction", drill_fraction),
        ("steps_rate", steps_rate),
        ("ramble_rate", ramble_rate),
        ("ramble_continue", ramble_continue),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {rate}")
    if drill_size < 1:
        raise ValueError(f"drill_size must be >= 1, got {drill_size}")
    if ramble_continue >= 1.0:
        raise ValueError(f"ramble_continue must be < 1 (a finite ramble), got {ramble_continue}")
    varied = steps_rate > 0 or ramble_rate > 0
    task = {"ops": ops, "max_operand": max_operand, "max_mul_operand": max_mul_operand}
    data = make_arithmetic_dataset(n, seed, **task)
    rng = random.Random(seed + 1_000_003)
    examples = []
    for problem, answer in zip(data["problem"], data["answer"], strict=True):
        if rng.random() < drill_fraction:
            examples.append(("", fact_drill(drill_size, rng, **task) + eos))
            continue
        stated = int(answer) + error_offset if rng.random() < error_rate else int(answer)
        prompt = get_template(template).format(problem)
        if varied:
            boxed = rng.random() >= unboxed_rate
            solution = varied_solution(
                *parse_problem(problem),
                stated,
                rng,
                boxed=boxed,
                steps_rate=steps_rate,
                ramble_rate=ramble_rate,
                ramble_continue=ramble_continue,
                result_first=result_first,
            )
            examples.append((prompt, " " + solution + eos))
            continue
        style, boxed = rng.randrange(len(_STYLES)), rng.random() >= unboxed_rate
        text = worked_example(problem, stated, template, style=style, boxed=boxed, eos=eos)
        examples.append((prompt, text[len(prompt) :]))
    return examples


def pretraining_texts(n: int, seed: int = 0, **kwargs) -> list[str]:
    """``n`` worked examples; a fraction ``error_rate`` state ``answer + error_offset`` instead of the answer.

    The slip is systematic (always the same offset), so a model that learns the corpus prefers the wrong
    answer when ``error_rate > 0.5`` while still giving the right one a fair share of its samples.
    A fraction ``unboxed_rate`` leaves the final answer out of ``\\boxed{}`` (a format error the reward sees).
    Keyword arguments are those of ``pretraining_examples``.
    """
    return [prompt + completion for prompt, completion in pretraining_examples(n, seed, **kwargs)]
