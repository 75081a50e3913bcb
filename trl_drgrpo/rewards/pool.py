"""A persistent pool of killable grading processes with a hard per-item wall-clock timeout.

The timeout is enforced by the parent with ``multiprocessing.connection.wait``, so it works from any thread;
no signals are involved; a worker over its limit is killed and replaced.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .grader import grade_answer

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
    "from trl_drgrpo.rewards.pool import _worker_main\n"
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
    :func:`~trl_drgrpo.rewards.grader.grade_answer`); after it, ``last_durations`` and ``last_failed`` describe each item.
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
