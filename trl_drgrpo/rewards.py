"""The paper's rule-based math reward as a TRL reward function, graded in a pool of killable processes.

``MathReward`` extracts answers in the calling process (cheap and bounded), grades each distinct
(answer, gold) pair once per call in a persistent pool of worker processes, and kills and replaces any worker
that exceeds the per-item timeout (that item scores 0). The timeout is enforced by the parent with
``multiprocessing.connection.wait``, so it works from any thread; no signals are involved.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .grader import extract_answer, grade_answer
from .templates import Template, get_template

logger = logging.getLogger(__name__)

GradeFn = Callable[[str, Any], float]
_STARTUP_TIMEOUT_S = 120.0  # a fresh worker imports sympy & co. before it reports ready
# Workers need only the grader: register the package without running its __init__ (which imports torch/TRL and
# would cost seconds per worker start).
_WORKER_BOOTSTRAP = (
    "import importlib.util, sys, types\n"
    "spec = importlib.util.find_spec('trl_drgrpo')\n"
    "package = types.ModuleType('trl_drgrpo')\n"
    "package.__path__ = list(spec.submodule_search_locations)\n"
    "package.__spec__ = spec\n"
    "sys.modules['trl_drgrpo'] = package\n"
    "from trl_drgrpo.rewards import _worker_main\n"
    "_worker_main({read_fd}, {write_fd})\n"
)


def _worker_main(read_fd: int, write_fd: int) -> None:
    """Worker loop: receive ``(key, answer, gold)``, send back ``(key, score)``; ``None`` stops it.

    The first message is ``(sys_path, grade_fn)`` so a custom grade function defined in the caller's modules
    can be unpickled here.
    """
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    sys_path, grade_fn_bytes = inbox.recv()
    sys.path[:] = sys_path
    fn = pickle.loads(grade_fn_bytes) if grade_fn_bytes else grade_answer
    try:  # import sympy & co. and warm their caches before the first timed item
        grade_answer("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}")
        grade_answer("(x+1)^2", "x^2+2x+1")
    except Exception:
        pass
    outbox.send("ready")
    while True:
        try:
            item = inbox.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        key, answer, gold = item
        try:
            score = float(fn(answer, gold))
        except Exception:
            score = 0.0
        try:
            outbox.send((key, score))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    """One grading process (a fresh interpreter, so no ``__main__`` re-import) and its two pipes."""

    def __init__(self, grade_fn_bytes: bytes):
        child_read, parent_write = os.pipe()
        parent_read, child_write = os.pipe()
        command = _WORKER_BOOTSTRAP.format(read_fd=child_read, write_fd=child_write)
        self.process = subprocess.Popen(
            [sys.executable, "-c", command], pass_fds=(child_read, child_write), stdin=subprocess.DEVNULL
        )
        os.close(child_read)
        os.close(child_write)
        self.conn = Connection(parent_read, writable=False)
        self.out = Connection(parent_write, readable=False)
        self.out.send((list(sys.path), grade_fn_bytes))
        self.ready = False
        self.started_at = time.monotonic()
        self.task: int | None = None
        self.task_started = 0.0

    def send(self, message: Any) -> None:
        self.out.send(message)

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except Exception:  # already gone
            pass
        self.conn.close()
        self.out.close()

    def stop(self) -> None:
        try:
            self.out.send(None)
            self.process.wait(timeout=1)
        except Exception:
            pass
        if self.process.poll() is None:
            self.kill()
        else:
            self.conn.close()
            self.out.close()


class GradingPool:
    """A fixed number of grading processes with a hard per-item timeout.

    ``run(items)`` grades ``(answer, gold)`` pairs with ``grade_fn`` (default
    :func:`~trl_drgrpo.grader.grade_answer`); after it, ``last_durations`` and ``last_failed`` describe each item.
    """

    def __init__(self, num_workers: int, timeout_s: float, grade_fn: GradeFn | None):
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.grade_fn_bytes = pickle.dumps(grade_fn) if grade_fn is not None else b""
        self.workers = [_Worker(self.grade_fn_bytes) for _ in range(num_workers)]
        self.killed = 0
        self.startup_failures = 0

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self.killed += 1
        self.workers[self.workers.index(worker)] = _Worker(self.grade_fn_bytes)

    def run(self, items: Sequence[tuple[str, Any]]) -> list[float]:
        """Grade ``items`` (answer, gold); an item over the timeout or whose worker dies scores 0."""
        scores = [0.0] * len(items)
        self.last_durations: list[float] = [0.0] * len(items)  # wall time per item, for benchmarks
        self.last_failed: list[bool] = [False] * len(items)  # timed out or worker died
        pending = list(range(len(items)))[::-1]
        busy = 0
        while pending or busy:
            for worker in self.workers:  # hand out work to idle ready workers
                if worker.ready and worker.task is None and pending:
                    index = pending.pop()
                    try:
                        worker.send((index, *items[index]))
                    except Exception:  # dead pipe: retry the item on a fresh worker
                        pending.append(index)
                        self._replace(worker)
                        continue
                    worker.task, worker.task_started = index, time.monotonic()
                    busy += 1
            now = time.monotonic()
            deadlines = [
                (w.task_started + self.timeout_s)
                if w.task is not None
                else (w.started_at + _STARTUP_TIMEOUT_S)
                for w in self.workers
                if w.task is not None or not w.ready
            ]
            timeout = max(0.0, min(deadlines) - now) if deadlines else 0.0
            for conn in wait([w.conn for w in self.workers], timeout=timeout):
                worker = next((w for w in self.workers if w.conn is conn), None)
                if worker is None:
                    continue
                try:
                    message = conn.recv()
                except (EOFError, OSError):  # the worker died: its item (if any) scores 0
                    if not worker.ready:
                        self.startup_failures += 1
                        if self.startup_failures >= 3:
                            raise RuntimeError(
                                "MathReward grading workers keep dying at start-up (is trl_drgrpo importable "
                                f"by {sys.executable}?); see their error output above"
                            ) from None
                    if worker.task is not None:
                        self.last_failed[worker.task] = True
                        self.last_durations[worker.task] = time.monotonic() - worker.task_started
                        busy -= 1
                    self._replace(worker)
                    continue
                if message == "ready":
                    worker.ready = True
                elif worker.task is not None and message[0] == worker.task:
                    scores[worker.task] = message[1]
                    self.last_durations[worker.task] = time.monotonic() - worker.task_started
                    worker.task = None
                    busy -= 1
            now = time.monotonic()
            for worker in list(self.workers):
                if worker.task is not None and now - worker.task_started > self.timeout_s:
                    logger.warning("grading timed out after %.1fs; killing the worker", self.timeout_s)
                    self.last_failed[worker.task] = True
                    self.last_durations[worker.task] = now - worker.task_started
                    busy -= 1
                    self._replace(worker)
                elif not worker.ready and now - worker.started_at > _STARTUP_TIMEOUT_S:
                    raise RuntimeError(f"a MathReward worker did not start within {_STARTUP_TIMEOUT_S:.0f}s")
        return scores

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []


def _close_pool(pool: GradingPool) -> None:
    try:
        pool.close()
    except Exception:
        pass


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


class MathReward:
    """Rule-based math correctness reward (1.0 / 0.0) usable as a TRL ``reward_funcs`` entry.

    Args:
        template: Template name or object; decides how answers are extracted (``\\boxed{}`` or r1 tags).
        answer_column: Dataset column holding the gold answer(s) (passed by TRL as a keyword argument).
        timeout_s: Hard wall-clock limit per graded item; a worker over it is killed and the item scores 0.
        num_workers: Grading processes; 0 grades in-process (no hard timeout; for debugging).
        grade_fn: Optional picklable ``(answer, gold) -> float`` replacing :func:`~trl_drgrpo.grader.grade_answer`.
        name: ``__name__`` under which TRL logs this reward.
    """

    def __init__(
        self,
        template: str | Template = "qwen_math",
        answer_column: str = "answer",
        timeout_s: float = 1.0,
        num_workers: int = 2,
        grade_fn: GradeFn | None = None,
        name: str = "math_reward",
    ):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.template = get_template(template)
        self.answer_column = answer_column
        self.timeout_s = float(timeout_s)
        self.num_workers = num_workers
        self.grade_fn = grade_fn
        self.__name__ = name
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
            f"MathReward(template={self.template.name!r}, answer_column={self.answer_column!r}, "
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
        return [extract_answer(_completion_text(c), self.template) for c in completions]

    def grade_pairs(self, pairs: Sequence[tuple[str, Any]]) -> list[float]:
        """Grade (answer, gold) pairs, in the pool or in-process when ``num_workers == 0``."""
        if not pairs:
            return []
        if self.num_workers == 0:
            fn = self.grade_fn or grade_answer
            out = []
            for answer, gold in pairs:
                try:
                    out.append(float(fn(answer, gold)))
                except Exception:
                    out.append(0.0)
            return out
        with self._lock:
            return self._get_pool().run(pairs)

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
        index: dict[tuple, int] = {}
        pairs: list[tuple[str, Any]] = []
        slots: list[int | None] = []
        for answer, gold in zip(answers, golds, strict=True):
            if answer is None:
                slots.append(None)
                continue
            key = (answer, _gold_key(gold))
            if key not in index:
                index[key] = len(pairs)
                pairs.append((answer, gold))
            slots.append(index[key])
        scores = self.grade_pairs(pairs)
        rewards = [0.0 if slot is None else scores[slot] for slot in slots]
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            log_extra("extracted_answer", ["" if a is None else a for a in answers])
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and answers:
            log_metric("math_reward/no_answer_frac", sum(a is None for a in answers) / len(answers))
        return rewards
