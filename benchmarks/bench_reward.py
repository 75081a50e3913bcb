"""Throughput and accuracy of ``MathReward`` vs TRL's ``accuracy_reward`` on RL-shaped batches.

Each step holds ``--problems`` problems x ``--group`` samples: long reasoning text (1-3k characters) ending
in a boxed answer drawn from a small per-problem pool (the gold in an equal form, or a wrong answer), so
answers repeat inside a group, and some samples never box an answer. Golds come from the evaluation suite
(synthetic integers when it is absent). Both rewards see the same batches, each in the input shape it expects.

    python benchmarks/bench_reward.py [--steps 4] [--problems 32] [--group 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SUITE = REPO.parent / "shared" / "data" / "evaluation_suite"

FILLER = [
    "Let me set up the problem carefully and name the unknown quantities.",
    "We substitute the expression into the equation and simplify both sides.",
    "Expanding the product gives $x^2 + 5x + 6 = (x+2)(x+3)$, which factors nicely.",
    "By the triangle inequality, the sum of any two sides exceeds the third side.",
    "Wait, let me double-check the arithmetic: $12 \\times 7 = 84$ and $84 - 19 = 65$.",
    "Using $\\frac{a}{b} + \\frac{c}{d} = \\frac{ad + bc}{bd}$ we combine the fractions.",
    "The discriminant is $b^2 - 4ac$, so the roots are real exactly when it is nonnegative.",
    "Hmm, that does not look right. Let me reconsider the case where $n$ is even.",
    "Summing the arithmetic series gives $\\frac{n(n+1)}{2}$ terms in total.",
    "Therefore the probability is the ratio of favorable outcomes to all outcomes.",
]


def load_golds(suite: Path, n: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    if suite.is_dir():
        from datasets import load_from_disk

        data = load_from_disk(str(suite))
        golds = [row["answer"] for split in data for row in data[split]]
    else:
        print(f"evaluation suite not found at {suite}: using synthetic integer golds")
        golds = [str(rng.randint(0, 999)) for _ in range(2000)]
    return [golds[rng.randrange(len(golds))] for _ in range(n)]


def gold_text(gold: Any) -> str:
    first = gold[0] if isinstance(gold, list) else gold
    text = str(int(first)) if isinstance(first, float) and first.is_integer() else str(first)
    text = text.strip()
    return (
        text[1:-1].strip() if text.startswith("$") and text.endswith("$") and text.count("$") == 2 else text
    )


def _same_as_an_alternative(answer: str, gold: Any) -> bool:
    from trl_drgrpo.rewards.grader import normalize_answer, parse_number

    a, av = normalize_answer(answer), parse_number(answer)
    for g in gold if isinstance(gold, list) else [gold]:
        g = str(int(g)) if isinstance(g, float) else str(g)
        gv = parse_number(g)
        if normalize_answer(g) == a or (av and gv and abs(av.value - gv.value) <= abs(gv.value) / 100):
            return True
    return False


def wrong_answer(gold: Any, rng: random.Random) -> str:
    """A provably different answer (checked against every acceptable gold)."""
    text = gold_text(gold)
    for _ in range(5):
        answer = _bump(text, rng)
        if not _same_as_an_alternative(answer, gold):
            return answer
    return f"{text} + 1" if "," not in text and "=" not in text else f"{text}, 1"


def _bump(gold: str, rng: random.Random) -> str:
    """Bump an integer that is not an exponent/subscript, or add 1."""
    ints = [m for m in re.finditer(r"\d+", gold) if not re.search(r"(\^\{?|_\{?)$", gold[: m.start()])]
    if ints:
        m = rng.choice(ints)
        return gold[: m.start()] + str(int(m.group()) + rng.choice([1, 2, 7])) + gold[m.end() :]
    return f"{gold} + 1" if "," not in gold and "=" not in gold else f"{gold}, 1"


def reasoning(rng: random.Random) -> str:
    parts, size, target = [], 0, rng.randint(1000, 3000)
    while size < target:
        sentence = rng.choice(FILLER)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


def make_batch(golds: list[Any], group: int, rng: random.Random) -> tuple[list[str], list[Any], list[int]]:
    completions, batch_golds, labels = [], [], []
    for gold in golds:
        text = gold_text(gold)
        pool = [(text, 1), (f"{text} ", 1), (wrong_answer(gold, rng), 0), (wrong_answer(gold, rng), 0)]
        weights = [4, 1, 2, 1]
        for _ in range(group):
            body = reasoning(rng)
            if rng.random() < 0.15:  # never boxed (e.g. truncated)
                completions.append(body + " So the answer should be around")
                labels.append(0)
            else:
                answer, label = rng.choices(pool, weights)[0]
                completions.append(f"{body}\nTherefore, the final answer is $\\boxed{{{answer}}}$.")
                labels.append(label)
            batch_golds.append(gold)
    return completions, batch_golds, labels


def trl_solution(gold: Any) -> str:
    """TRL's ``accuracy_reward`` wants a single raw LaTeX solution string."""
    return f"${gold_text(gold)}$"


def accuracy(scores: list[float | None], labels: list[int]) -> float:
    return sum((1 if s == 1.0 else 0) == y for s, y in zip(scores, labels, strict=True)) / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", default=os.environ.get("TRL_DRGRPO_EVAL_SUITE", str(DEFAULT_SUITE)))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--problems", type=int, default=32, help="problems per step")
    parser.add_argument("--group", type=int, default=8, help="samples per problem")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from trl.rewards import accuracy_reward

    from trl_drgrpo.rewards import MathReward

    rng = random.Random(args.seed)
    golds = load_golds(Path(args.suite), args.steps * args.problems, args.seed)
    batches = [
        make_batch(golds[i * args.problems : (i + 1) * args.problems], args.group, rng)
        for i in range(args.steps)
    ]
    n = sum(len(b[0]) for b in batches)
    print(f"{args.steps} steps x {args.problems} problems x {args.group} samples = {n} completions")
    print(f"mean completion length: {sum(len(c) for b in batches for c in b[0]) / n:.0f} chars")

    reward = MathReward(num_workers=args.workers, timeout_s=args.timeout)
    start = time.perf_counter()
    reward([r"\boxed{1}"], answer=["1"])  # start the worker pool (not part of the steady-state throughput)
    startup = time.perf_counter() - start

    ours_scores: list[float] = []
    start = time.perf_counter()
    for completions, batch_golds, _ in batches:
        ours_scores += reward(completions, answer=batch_golds)
    ours_time = time.perf_counter() - start
    reward.close()

    trl_scores: list[float | None] = []
    start = time.perf_counter()
    for completions, batch_golds, _ in batches:
        conversational = [[{"role": "assistant", "content": c}] for c in completions]
        trl_scores += accuracy_reward(conversational, [trl_solution(g) for g in batch_golds])
    trl_time = time.perf_counter() - start

    labels = [y for b in batches for y in b[2]]
    print(f"\nMathReward ({args.workers} workers): {n / ours_time:8.1f} completions/s  ({ours_time:.2f} s)")
    print(f"   pool start-up (once, excluded): {startup:.2f} s")
    print(f"TRL accuracy_reward:      {n / trl_time:8.1f} completions/s  ({trl_time:.2f} s)")
    print(f"speed ratio (ours / TRL): {trl_time / ours_time:.1f}x")
    print(
        f"accuracy vs labels: ours {100 * accuracy(ours_scores, labels):.2f}%, TRL {100 * accuracy(trl_scores, labels):.2f}%"
    )
    print(f"TRL returned None (unparseable gold) for {sum(s is None for s in trl_scores)} completions")


if __name__ == "__main__":
    main()
