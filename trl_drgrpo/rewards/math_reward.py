"""The paper's rule-based math reward as a TRL reward function, graded in a pool of killable processes.

``MathReward`` extracts answers in the calling process (cheap and bounded), grades each distinct
(answer, gold) pair once per call in a persistent pool of worker processes, and kills and replaces any worker
that exceeds the per-item timeout (that item scores 0). The timeout is enforced by the parent with
``multiprocessing.connection.wait``, so it works from any thread; no signals are involved.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..templates import Template, get_template
from .extraction import check_answer_format
from .grader import Outcome, call_with_outcome, extract_answer, grade_answer
from .pool import GradeFn, GradingPool, _close_pool

logger = logging.getLogger(__name__)


def _completion_text(completion: Any) -> str:
    """Plain string, or the last assistant message of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if isinstance(content, list):  # multimodal-style content parts
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content or "")
        return ""
    raise TypeError(f"a completion must be a str or a list of chat messages, got {type(completion).__name__}")


def _gold_key(gold: Any) -> Any:
    if isinstance(gold, list):
        return tuple(_gold_key(g) for g in gold)
    if isinstance(gold, float):
        return ("float", repr(gold))
    return gold


def grade_deduplicated(
    answers: Sequence[str | None],
    golds: Sequence[Any],
    grade_pairs: Callable[[list], list[float]],
    slots: list[int | None] | None = None,
) -> list[float]:
    """Scores of ``answers`` against ``golds``: each distinct (answer, gold) pair graded once by ``grade_pairs``;
    a response without an extractable answer scores 0. ``slots``, when given, receives each answer's index among
    the graded pairs (None: no answer)."""
    index: dict[tuple, int] = {}
    pairs: list[tuple[str, Any]] = []
    slots = [] if slots is None else slots
    for answer, gold in zip(answers, golds, strict=True):
        if answer is None:
            slots.append(None)
            continue
        key = (answer, _gold_key(gold))
        if key not in index:
            index[key] = len(pairs)
            pairs.append((answer, gold))
        slots.append(index[key])
    scores = grade_pairs(pairs)
    return [0.0 if slot is None else float(scores[slot]) for slot in slots]


class MathReward:
    """Rule-based math correctness reward (1.0 / 0.0) usable as a TRL ``reward_funcs`` entry.

    Args:
        template: Template name or object; decides how answers are extracted (``\\boxed{}`` or r1 tags).
        answer_format: ``"paper"`` (default: the paper's exact extraction rules) or ``"lenient"``.
        answer_column: Dataset column holding the gold answer(s) (passed by TRL as a keyword argument).
        timeout_s: Hard wall-clock limit per graded item; a worker over it is killed and the item scores 0.
        num_workers: Grading processes; 0 grades in-process (no hard timeout; for debugging).
        grade_fn: Optional picklable ``(answer, gold) -> float`` replacing :func:`~trl_drgrpo.rewards.grader.grade_answer`.
        name: ``__name__`` under which TRL logs this reward.
    """

    #: Checks a final answer: under ``truncated_completion_reward="auto"`` (the default), ``DrGRPOTrainer`` gives a
    #: response cut at the budget 0 here, as the paper's code does.
    answer_reward = True

    def __init__(
        self,
        template: str | Template = "qwen_math",
        answer_column: str = "answer",
        answer_format: str = "paper",
        timeout_s: float = 5.0,
        num_workers: int = 2,
        grade_fn: GradeFn | None = None,
        name: str = "math_reward",
    ):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.template = get_template(template)
        self.answer_format = check_answer_format(answer_format)
        self.answer_column = answer_column
        self.timeout_s = float(timeout_s)
        self.num_workers = num_workers
        self.grade_fn = grade_fn
        self.__name__ = name
        self.last_timed_out = 0  # items of the last call killed at the hard timeout (the last resort)
        self.last_died = 0  # items of the last call whose worker died
        self.last_outcomes: list[Outcome] = []  # per completion of the last call: how its score came about
        self.last_pair_outcomes: list[Outcome] = []  # per distinct graded pair of the last call
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._pool: GradingPool | None = None
        self._pool_pid: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()

    # --- pickling / deep copies: each process (and copy) owns its own pool -------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_pool", "_pool_pid", "_finalizer", "_lock"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __deepcopy__(self, memo: dict) -> MathReward:
        clone = self.__class__.__new__(self.__class__)
        clone.__setstate__(self.__getstate__())
        memo[id(self)] = clone
        return clone

    def __enter__(self) -> MathReward:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MathReward(template={self.template.name!r}, answer_format={self.answer_format!r}, "
            f"answer_column={self.answer_column!r}, "
            f"timeout_s={self.timeout_s}, num_workers={self.num_workers})"
        )

    def _get_pool(self) -> GradingPool:
        if self._pool is not None and self._pool_pid != os.getpid():  # inherited through fork: not ours
            self._pool = None
        if self._pool is None:
            self._pool = GradingPool(self.num_workers, self.timeout_s, self.grade_fn)
            self._pool_pid = os.getpid()
            self._finalizer = weakref.finalize(self, _close_pool, self._pool)  # also runs at interpreter exit
        return self._pool

    def start(self) -> MathReward:
        """Start (and warm) the grading processes now rather than on the first call; returns ``self``."""
        if self.num_workers == 0:
            from .symbolic import warm

            warm()
        else:
            with self._lock:
                self._get_pool().start()
        return self

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        with self._lock:
            if self._finalizer is not None:
                if self._pool_pid == os.getpid():
                    self._finalizer()
                else:
                    self._finalizer.detach()
            self._pool = None
            self._finalizer = None

    # --- the reward function ----------------------------------------------------------------------------------
    def extract(self, completions: Sequence[Any]) -> list[str | None]:
        """Extracted answers of ``completions`` (None where no answer is found)."""
        return [extract_answer(_completion_text(c), self.template, self.answer_format) for c in completions]

    def grade_pairs(self, pairs: Sequence[tuple[str, Any]]) -> list[float]:
        """Grade (answer, gold) pairs, in the pool or in-process when ``num_workers == 0``."""
        self.last_timed_out = self.last_died = 0
        self.last_pair_outcomes: list[Outcome] = []
        if not pairs:
            return []
        if self.num_workers == 0:
            fn = self.grade_fn or grade_answer
            graded = [call_with_outcome(fn, answer, gold) for answer, gold in pairs]
            self.last_pair_outcomes = [outcome for _, outcome in graded]
            return [score for score, _ in graded]
        with self._lock:
            pool = self._get_pool()
            scores = pool.run(pairs)
            self.last_timed_out = sum(pool.last_timed_out)
            self.last_died = sum(pool.last_died)
            self.last_pair_outcomes = list(pool.last_outcomes)
            return scores

    def __call__(self, completions: Sequence[Any], **kwargs) -> list[float]:
        """TRL reward-function entry point: one score per completion; golds under ``kwargs[answer_column]``."""
        if self.answer_column not in kwargs:
            raise KeyError(
                f"MathReward needs the gold answers under the '{self.answer_column}' keyword (a dataset column); "
                f"got keywords {sorted(kwargs)}"
            )
        golds = kwargs[self.answer_column]
        if len(golds) != len(completions):
            raise ValueError(f"got {len(completions)} completions but {len(golds)} gold answers")
        answers = self.extract(completions)
        slots: list[int | None] = []
        rewards = grade_deduplicated(answers, golds, self.grade_pairs, slots)
        self.last_outcomes = [Outcome.NO_ANSWER if k is None else self.last_pair_outcomes[k] for k in slots]
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            log_extra("extracted_answer", ["" if a is None else a for a in answers])
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and answers:
            log_metric("math_reward/no_answer_frac", sum(a is None for a in answers) / len(answers))
            # responses whose grader raised (scored 0 by the catch-all): a bug to look at, not a wrong answer
            log_metric(
                "math_reward/grader_errors", float(sum(o is Outcome.RAISED for o in self.last_outcomes))
            )
            if self.num_workers:  # hard-bound events, apart from the ordinary zeros
                log_metric("math_reward/hard_timeouts", float(self.last_timed_out))
                log_metric("math_reward/worker_deaths", float(self.last_died))
        return rewards
