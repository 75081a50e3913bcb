"""The bias lab's mechanism metrics: what each sampled response did, and what each arm's weights push.

The lab's task has a grammar (``synthetic.varied_solution``): ``a op b = \\boxed{N}.`` then either nothing
(stop), a worked check (after a right answer), or filler sentences (a ramble). ``parse_response`` reads
that structure back from a sampled response; ``rollout_mechanism`` turns one rollout (its responses, token
lengths and advantages, as ``lab_train`` records them) into the decision rates, the predicted drift of
P(continue | boxed wrong answer) and the share of the update per question-accuracy bucket.

All pure functions over plain lists, so the tests check them on hand-written responses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..rewards.extraction import last_boxed
from .synthetic import _FILLERS

_CHECK_PREFIX = "Let's check this step by step"


@dataclass(frozen=True)
class Structure:
    """One response read with the task's grammar.

    ``verdict``: ``"unboxed"`` (no ``\\boxed{}``), ``"right"`` or ``"wrong"``; ``slip`` is a wrong answer equal
    to gold + 1 (the corpus' systematic slip). ``ending`` (boxed only): ``"stop"`` (nothing after the answer's
    sentence), ``"check"`` (the worked check), ``"ramble"`` (only filler sentences) or ``"other"``; ``fillers``
    counts the filler sentences, ``tail_chars`` the characters after the answer's sentence.
    """

    verdict: str
    slip: bool = False
    ending: str | None = None
    fillers: int = 0
    tail_chars: int = 0

    @property
    def boxed(self) -> bool:
        return self.verdict != "unboxed"

    @property
    def continued(self) -> bool:
        """Something follows the boxed answer's sentence (the decision the length bias acts on)."""
        return self.ending not in (None, "stop")


def _count_fillers(tail: str) -> tuple[int, bool]:
    """Number of leading filler sentences in ``tail`` and whether they make up all of it."""
    count, rest = 0, tail
    while rest:
        for filler in _FILLERS:
            if rest.startswith(filler):
                count, rest = count + 1, rest[len(filler) :].lstrip()
                break
        else:
            return count, False
    return count, True


def _as_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_response(text: str, gold: str | int) -> Structure:
    """The structure of one response to a question whose answer is ``gold`` (see ``Structure``).

    The answer is the last ``\\boxed{}``, the one ``MathReward`` grades; the decision is what follows it.
    """
    content = last_boxed(text)  # the reward's own reading
    if content is None:
        return Structure("unboxed")
    end = text.rfind("\\boxed") + len("\\boxed{") + len(content) + 1
    stated, gold_int = _as_int(content), _as_int(str(gold))
    right = stated is not None and stated == gold_int
    slip = not right and stated is not None and gold_int is not None and stated == gold_int + 1
    tail = text[end:]
    tail = tail[1:] if tail.startswith(".") else tail
    tail = tail.strip()
    if not tail:
        return Structure("right" if right else "wrong", slip, "stop")
    if tail.startswith(_CHECK_PREFIX):
        ending, fillers = "check", 0
    else:
        fillers, only = _count_fillers(tail)
        ending = "ramble" if only and fillers else "other"
    return Structure("right" if right else "wrong", slip, ending, fillers, len(tail))


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def decision_rates(structures: Sequence[Structure]) -> dict[str, float | None]:
    """P(continue | boxed wrong), P(continue | boxed right), mean filler sentences after a wrong answer that
    continues, boxed rate, wrong and slip rates among boxed answers and P(continue | slip) (None where nothing
    was counted)."""
    wrong = [s for s in structures if s.verdict == "wrong"]
    right = [s for s in structures if s.verdict == "right"]
    boxed = len(wrong) + len(right)
    wrong_cont = [s for s in wrong if s.continued]
    return {
        "p_continue_wrong": _rate(len(wrong_cont), len(wrong)),
        "p_continue_right": _rate(sum(s.continued for s in right), len(right)),
        "fillers_after_wrong": (sum(s.fillers for s in wrong_cont) / len(wrong_cont) if wrong_cont else None),
        "boxed_rate": _rate(boxed, len(structures)),
        "wrong_rate": _rate(len(wrong), boxed),
        "slip_rate": _rate(sum(s.slip for s in wrong), boxed),
        "p_continue_slip": _rate(sum(s.continued for s in wrong if s.slip), sum(s.slip for s in wrong)),
        "n_wrong": float(len(wrong)),
    }


def token_weights(
    lengths: Sequence[int], length_normalization: bool, budget: int, alpha: float | None = None
) -> list[float]:
    """Each response's per-token weight in the loss, before the batch mean: 1/|o_i| (GRPO) or 1/C (Dr. GRPO);
    with ``alpha`` (``length_weight_exponent``) the graded ``C^(alpha-1) |o_i|^-alpha`` (``objective.length_weights``)."""
    if alpha is not None and 0.0 < alpha < 1.0:
        if budget <= 0:
            raise ValueError(f"the budget C must be positive, got {budget}")
        return [(budget / max(1, n)) ** alpha / budget for n in lengths]
    if length_normalization:
        return [1.0 / max(1, n) for n in lengths]
    if budget <= 0:
        raise ValueError(f"the budget C must be positive, got {budget}")
    return [1.0 / budget] * len(lengths)


def predicted_drift(
    structures: Sequence[Structure],
    advantages: Sequence[float],
    weights: Sequence[float],
    lengths: Sequence[int],
) -> dict[str, float | None]:
    """First-order change of log P(continue | boxed wrong) that one rollout's update implies.

    Derivation. On policy (ratio 1, clip inactive) the surrogate's gradient is that of
    ``J = 1/B sum_i w_i A_i sum_t log pi(o_it)``, with ``w_i = 1/|o_i|`` (GRPO) or ``1/C`` (Dr. GRPO).
    Approximation (tabular decision): every response that states a boxed wrong answer reaches the same
    decision, stop or continue, governed by one free logit ``z`` with ``p = P(continue) = sigmoid(z)``.
    Which filler follows, and all other tokens, do not depend on ``z``; only the decision token does, with
    ``d log pi(decision_i) / dz = 1[continue_i] - p``. Hence

        g = dJ/dz = 1/B sum_{i in D} w_i A_i (1[continue_i] - p),      D = responses at the decision,

    and a gradient step ``eta`` moves ``log p`` by ``(1 - p) eta g``. ``p`` is estimated by the rollout's
    own share of continuing responses. Under Dr. GRPO ``w_i = 1/C`` and, with a 0/1 reward, all wrong
    responses of a group share one advantage, so ``E[g] = 0``: no drift in expectation. Under GRPO
    ``w_i = 1/|o_i|`` is smaller for the (longer) continuing responses and ``A_i < 0``, so stopping is
    pushed down more than continuing: ``E[g] = A p (1-p) (1/L_cont - 1/L_stop) > 0`` per wrong response.

    Adam makes the step's size roughly independent of the gradient's overall scale (which differs between
    arms by 1/|o| vs 1/C and 1/std), so the comparable quantity is ``g`` relative to the rollout's total
    token-weight mass ``M = 1/B sum_i |A_i| w_i |o_i|``: ``drift = (1 - p) g / M``. The measured change is
    ``kappa * sum_t drift_t`` with one gain ``kappa`` (the optimizer's step in logit units), the same for
    every arm; the report fits it once over all runs. Returns ``g``, ``M``, ``p`` and ``drift``.
    """
    n = len(structures)
    if not (len(advantages) == len(weights) == len(lengths) == n):
        raise ValueError("structures, advantages, weights and lengths must have the same length")
    at_decision = [i for i, s in enumerate(structures) if s.verdict == "wrong"]
    mass = sum(abs(a) * w * max(1, k) for a, w, k in zip(advantages, weights, lengths, strict=True)) / max(
        1, n
    )
    if not at_decision:
        return {"g": 0.0, "mass": mass, "p": None, "drift": 0.0}
    p = sum(structures[i].continued for i in at_decision) / len(at_decision)
    g = sum(weights[i] * advantages[i] * (float(structures[i].continued) - p) for i in at_decision) / n
    drift = (1.0 - p) * g / mass if mass > 0 else 0.0
    return {"g": g, "mass": mass, "p": p, "drift": drift}


def bucket_shares(
    rewards: Sequence[float],
    advantages: Sequence[float],
    weights: Sequence[float],
    lengths: Sequence[int],
    group_size: int,
    threshold: float = 0.5,
) -> dict[int, float]:
    """Share of the rollout's token-weight mass (``|A_i| w_i |o_i|``) per number of right answers in the group.

    Keys 0..G; groups that are all right or all wrong carry no advantage, so their share is 0. GRPO's 1/std
    raises the share of nearly-all-right and nearly-all-wrong groups (the difficulty bias).
    """
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards cannot be split into groups of {group_size}")
    shares = dict.fromkeys(range(group_size + 1), 0.0)
    total = 0.0
    for start in range(0, len(rewards), group_size):
        idx = range(start, start + group_size)
        k = sum(rewards[i] >= threshold for i in idx)
        mass = sum(abs(advantages[i]) * weights[i] * max(1, lengths[i]) for i in idx)
        shares[k] += mass
        total += mass
    return {k: (v / total if total > 0 else 0.0) for k, v in shares.items()}


def rollout_mechanism(record: Mapping, threshold: float = 0.5) -> dict:
    """Every mechanism figure of one recorded rollout (a ``rollouts.jsonl`` line of ``lab_train``)."""
    structures = [parse_response(t, g) for t, g in zip(record["completions"], record["answers"], strict=True)]
    weights = token_weights(
        record["lengths"],
        record["length_normalization"],
        record["budget"],
        record.get("length_weight_exponent"),
    )
    out = {"step": record["step"], **decision_rates(structures)}
    out.update(
        {
            f"pred_{k}": v
            for k, v in predicted_drift(structures, record["advantages"], weights, record["lengths"]).items()
        }
    )
    wrong_cont = [
        n for s, n in zip(structures, record["lengths"], strict=True) if s.verdict == "wrong" and s.continued
    ]
    wrong_stop = [
        n
        for s, n in zip(structures, record["lengths"], strict=True)
        if s.verdict == "wrong" and not s.continued
    ]
    out["tokens_wrong_continue"] = sum(wrong_cont) / len(wrong_cont) if wrong_cont else None
    out["tokens_wrong_stop"] = sum(wrong_stop) / len(wrong_stop) if wrong_stop else None
    out["counts_wrong"] = [len(wrong_cont), len(wrong_cont) + len(wrong_stop)]
    slips = [s for s in structures if s.slip]
    out["counts_slip"] = [sum(s.continued for s in slips), len(slips)]
    shares = bucket_shares(
        record["rewards"], record["advantages"], weights, record["lengths"], record["group_size"], threshold
    )
    out["bucket_shares"] = [shares[k] for k in sorted(shares)]
    return out


def pooled_rate(counts: Sequence[Sequence[int]]) -> float | None:
    """``sum(hits) / sum(totals)`` over ``[hits, total]`` pairs (None when nothing was counted)."""
    hits, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return hits / total if total else None


def log_drift(counts: Sequence[Sequence[int]], window: int, floor: float = 0.5) -> float | None:
    """Measured change of log P(continue | wrong): pooled rate of the last ``window`` rollouts over the first.

    ``floor`` is added to both hit and miss counts (a Jeffreys-like correction) so that 0 and 1 stay finite.
    """
    if not counts:
        return None
    w = max(1, min(window, len(counts) // 2))
    first, last = counts[:w], counts[-w:]

    def rate(part):
        hits, total = sum(c[0] for c in part), sum(c[1] for c in part)
        return (hits + floor) / (total + 2 * floor)

    return math.log(rate(last)) - math.log(rate(first))
