"""Throughput and accuracy of ``MathReward`` vs TRL's ``accuracy_reward`` on RL-shaped batches.

Each step holds ``--problems`` problems x ``--group`` samples: reasoning text (1-3k characters) in plain prose
or LaTeX-heavy (``--style``), ending in a boxed answer drawn from a small per-problem pool (the gold in an
equal form, or a wrong answer; about 40% of the responses are right), so answers repeat inside a group, and
some samples never box an answer. Golds come from the evaluation suite (synthetic integers when it is absent).
Both rewards see the same batches, each in the input shape it expects, interleaved step by step (their order
alternating) so that a CPU shared with other work slows both alike. The pool is started and warm before timing.

    python benchmarks/bench_reward.py [--style prose|latex|both] [--steps 4] [--problems 128] [--group 8]
                                      [--workers 2] [--profile]
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


LATEX_FILLER = [
    r"We have $\frac{a}{b} + \frac{c}{d} = \frac{ad + bc}{bd}$, so $\frac{3}{4} + \frac{5}{6} = \frac{19}{12}$.",
    r"\[ x^2 - 5x + 6 = (x-2)(x-3) = 0 \implies x \in \{2, 3\}. \]",
    r"By Vieta, $r_1 + r_2 = -\frac{b}{a}$ and $r_1 r_2 = \frac{c}{a}$, hence $r_1^2 + r_2^2 = \frac{b^2 - 2ac}{a^2}$.",
    r"\begin{align*} \sum_{k=1}^{n} k^2 &= \frac{n(n+1)(2n+1)}{6} \\ &= \frac{10 \cdot 11 \cdot 21}{6} = 385. \end{align*}",
    r"Since $\sin^2\theta + \cos^2\theta = 1$, we get $\cos\theta = \pm\sqrt{1 - \frac{9}{25}} = \pm\frac{4}{5}$.",
    r"The determinant is $\det\begin{pmatrix} 2 & 1 \\ 1 & 3 \end{pmatrix} = 6 - 1 = 5$.",
    r"Let $f(x) = \sqrt{x^2 + 1}$; then $f'(x) = \frac{x}{\sqrt{x^2+1}}$ and $f'(1) = \frac{\sqrt{2}}{2}$.",
    r"Wait, $\binom{7}{3} = \frac{7!}{3!\,4!} = 35$, not $\binom{7}{2} = 21$; let me redo it.",
    r"So $\log_2 8 + \log_3 27 = 3 + 3 = 6$ and $e^{i\pi} + 1 = 0$ as expected.",
    r"\[ \int_0^1 x^2 \, dx = \left. \frac{x^3}{3} \right|_0^1 = \frac{1}{3}. \]",
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


def reasoning(rng: random.Random, filler: list[str] = FILLER) -> str:
    parts, size, target = [], 0, rng.randint(1000, 3000)
    while size < target:
        sentence = rng.choice(filler)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


def make_batch(
    golds: list[Any], group: int, rng: random.Random, style: str = "prose"
) -> tuple[list[str], list[Any], list[int]]:
    completions, batch_golds, labels = [], [], []
    for gold in golds:
        text = gold_text(gold)
        pool = [(text, 1), (f"{text} ", 1), (wrong_answer(gold, rng), 0), (wrong_answer(gold, rng), 0)]
        weights = [2, 1, 2, 1]  # with 15% unboxed: ~42% right
        for _ in range(group):
            body = reasoning(rng, LATEX_FILLER if style == "latex" else FILLER)
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


def hang_on_marker(answer: str, gold: Any) -> float:
    """Grading function for ``--hang``: never returns on the answer ``hang``, grades normally otherwise."""
    if answer == "hang":
        time.sleep(3600)
    from trl_drgrpo.rewards.grader import grade_answer

    return grade_answer(answer, gold)


def hang_test(count: int, workers: int, timeout: float) -> None:
    """Wall time of one call holding ``count`` items that never finish (each must be killed at the timeout)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_reward as me

    from trl_drgrpo.rewards import MathReward

    with MathReward(num_workers=workers, timeout_s=timeout, grade_fn=me.hang_on_marker) as reward:
        reward.start()
        completions = [r"\boxed{hang}"] * count + [r"\boxed{1}"] * 8
        golds = [str(k) for k in range(count)] + ["1"] * 8  # distinct golds: nothing deduplicated
        start = time.perf_counter()
        scores = reward(completions, answer=golds)
        elapsed = time.perf_counter() - start
    print(
        f"{count} never-finishing items + 8 normal ones, {workers} workers, {timeout:.1f} s timeout: "
        f"{elapsed:.2f} s for the call; {reward.last_timed_out} timed out; normal items scored {scores[count:]}"
    )


def run_style(style: str, args: argparse.Namespace, reward: Any, accuracy_reward: Any) -> float:
    """Time both rewards on the same batches, interleaved; print and return the speed ratio."""
    rng = random.Random(args.seed)
    golds = load_golds(Path(args.suite), args.steps * args.problems, args.seed)
    batches = [
        make_batch(golds[i * args.problems : (i + 1) * args.problems], args.group, rng, style)
        for i in range(args.steps)
    ]
    n = sum(len(b[0]) for b in batches)
    labels = [y for b in batches for y in b[2]]
    print(
        f"\n== {style} reasoning: {args.steps} steps x {args.problems} problems x {args.group} samples = {n} =="
    )
    print(
        f"mean completion length {sum(len(c) for b in batches for c in b[0]) / n:.0f} chars; "
        f"{100 * sum(labels) / n:.1f}% right"
    )
    ours_time = trl_time = 0.0
    ours_scores: list[float] = []
    trl_scores: list[float | None] = []
    for step, (completions, batch_golds, _) in enumerate(batches):
        conversational = [[{"role": "assistant", "content": c}] for c in completions]
        solutions = [trl_solution(g) for g in batch_golds]
        order = ("ours", "trl") if step % 2 == 0 else ("trl", "ours")
        for who in order:
            start = time.perf_counter()
            if who == "ours":
                ours_scores += reward(completions, answer=batch_golds)
                ours_time += time.perf_counter() - start
            else:
                trl_scores += accuracy_reward(conversational, solutions)
                trl_time += time.perf_counter() - start
    ratio = trl_time / ours_time
    print(
        f"MathReward ({args.workers} workers, warm): {n / ours_time:8.1f} completions/s  ({ours_time:.2f} s)"
    )
    print(f"TRL accuracy_reward:          {n / trl_time:8.1f} completions/s  ({trl_time:.2f} s)")
    print(f"speed ratio (ours / TRL): {ratio:.2f}x")
    print(
        f"accuracy vs labels: ours {100 * accuracy(ours_scores, labels):.2f}%, "
        f"TRL {100 * accuracy(trl_scores, labels):.2f}%; TRL returned None for "
        f"{sum(s is None for s in trl_scores)}; hard timeouts (ours) {reward._pool.timed_out}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", default=os.environ.get("TRL_DRGRPO_EVAL_SUITE", str(DEFAULT_SUITE)))
    parser.add_argument("--style", choices=["prose", "latex", "both"], default="both")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--problems", type=int, default=128, help="problems per step")
    parser.add_argument("--group", type=int, default=8, help="samples per problem")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="hard per-item timeout (MathReward default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the calling process's side of MathReward"
    )
    parser.add_argument(
        "--hang", type=int, default=0, help="only time one call with this many never-finishing items"
    )
    args = parser.parse_args()
    if args.hang:
        sys.path.insert(0, str(REPO))
        hang_test(args.hang, args.workers, args.timeout)
        return

    sys.path.insert(0, str(REPO))
    from trl.rewards import accuracy_reward

    from trl_drgrpo.rewards import MathReward

    reward = MathReward(num_workers=args.workers, timeout_s=args.timeout)
    start = time.perf_counter()
    reward.start()  # template process + workers, warm (not part of the steady-state throughput)
    print(f"pool start-up (once, excluded): {time.perf_counter() - start:.2f} s")
    styles = ["prose", "latex"] if args.style == "both" else [args.style]
    try:
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for style in styles:
                run_style(style, args, reward, accuracy_reward)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            for style in styles:
                run_style(style, args, reward, accuracy_reward)
    finally:
        reward.close()


if __name__ == "__main__":
    main()
