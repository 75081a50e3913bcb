"""Grading generations and the per-benchmark metrics (avg@n accuracy, pass@k, lengths).

Responses are graded like training rewards: answers extracted in-process by the template's rules
(``answer_format``), then graded by the named reward in its pool of killable processes (warm workers, a hard
bound per item), shared by every evaluation of the process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ..rewards.math_reward import grade_deduplicated
from ..templates import Template, get_template
from .backends import GenerationBackend, effective_stops

logger = logging.getLogger(__name__)


class Problem(NamedTuple):
    """A problem to evaluate: benchmark name, its index in the benchmark, text and gold answer."""

    benchmark: str
    index: int
    problem: str
    gold: Any


def _json_safe(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return value


_GRADERS: dict[tuple, Any] = {}


def shared_grader(reward: str, template: str | Template, answer_format: str) -> Any:
    """The process-wide pool-backed grader for (reward, template, answer_format), started on first use."""
    from ..rewards import build_reward

    template = get_template(template)
    key = (reward, template.name, answer_format)
    grader = _GRADERS.get(key)
    if grader is None:
        grader = _GRADERS[key] = build_reward(reward, template=template, answer_format=answer_format)
    return grader


def score_responses(texts: Sequence[str], golds: Sequence[Any], grader: Any) -> tuple[list, list[float]]:
    """Extracted answers and scores of ``texts`` against ``golds``; each distinct (answer, gold) graded once."""
    answers = grader.extract(texts)
    return answers, grade_deduplicated(answers, golds, grader.grade_pairs)


def generate_and_grade(
    backend: GenerationBackend,
    template: str | Template,
    problems: Sequence[Problem],
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 3000,
    seed: int = 0,
    stop: Sequence[str] | None = None,
    reward: str = "math",
    answer_format: str = "paper",
    grader: Any = None,
) -> list[dict]:
    """Generate ``n`` responses per problem and grade them; return one record per sample.

    ``grader`` (a :class:`~trl_drgrpo.rewards.MathReward`) defaults to the shared pool-backed grader of
    ``reward`` / ``answer_format``.
    """
    template = get_template(template)
    grader = grader or shared_grader(reward, template, answer_format)
    prompts = [template.format(p.problem) for p in problems]
    stops = effective_stops(template, stop)
    generations = backend.generate(prompts, n, temperature, top_p, max_tokens, stops, seed)
    if len(generations) != len(problems):
        raise RuntimeError(f"backend returned {len(generations)} results for {len(problems)} prompts")
    texts = [gen.text for gens in generations for gen in gens]
    golds = [problem.gold for problem, gens in zip(problems, generations, strict=True) for _ in gens]
    answers, scores = score_responses(texts, golds, grader)
    records = []
    flat = iter(zip(answers, scores, strict=True))
    for problem, prompt, gens in zip(problems, prompts, generations, strict=True):
        for k, gen in enumerate(gens):
            answer, score = next(flat)
            records.append(
                {
                    "benchmark": problem.benchmark,
                    "index": problem.index,
                    "problem": problem.problem,
                    "gold": _json_safe(problem.gold),
                    "prompt": prompt,
                    "sample": k,
                    "response": gen.text,
                    "response_tokens": int(gen.num_tokens),
                    "finished": bool(gen.finished),
                    "extracted_answer": answer,
                    "score": score,
                }
            )
    return records


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate ``1 - C(n-c, k) / C(n, k)`` from ``c`` correct out of ``n`` samples."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def summarize_benchmark(records: Sequence[dict], n: int) -> dict:
    """Metrics of one benchmark from its sample records (``n`` samples per problem)."""
    by_problem: dict[int, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["index"], []).append(r)
    if not by_problem:
        raise ValueError("no samples to summarize")
    correct = [sum(1 for r in rs if r["score"] > 0) for rs in by_problem.values()]
    tokens = [r["response_tokens"] for r in records]
    summary = {
        "accuracy": sum(r["score"] for r in records) / len(records),
        **{f"pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(correct) for k in range(1, n + 1)},
        "mean_response_tokens": sum(tokens) / len(tokens),
        "max_response_tokens": max(tokens),
        "well_formed": sum(r["extracted_answer"] is not None for r in records) / len(records),
        "truncated": sum(not r["finished"] for r in records) / len(records),
        "count": len(by_problem),
        "num_samples": len(records),
    }
    return summary


def build_summary(records: Iterable[dict], benchmarks: Sequence[str], n: int, config: dict) -> dict:
    """The ``summary.json`` content: per-benchmark metrics, their average accuracy and the config."""
    grouped: dict[str, list[dict]] = {b: [] for b in benchmarks}
    for r in records:
        if r["benchmark"] in grouped:
            grouped[r["benchmark"]].append(r)
    per_benchmark = {b: summarize_benchmark(rs, n) for b, rs in grouped.items() if rs}
    accuracies = [m["accuracy"] for m in per_benchmark.values()]
    return {
        "model": config.get("model_name") or config.get("model"),
        "template": config.get("template"),
        "reward": config.get("reward", "math"),
        "answer_format": config.get("answer_format", "paper"),
        "benchmarks": per_benchmark,
        "average": {"accuracy": sum(accuracies) / len(accuracies) if accuracies else None},
        "config": config,
    }
