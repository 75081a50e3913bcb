"""A persistent pool of killable grading processes with a hard per-item wall-clock timeout (the last resort).

One *template* process (a fresh interpreter) imports the grader and warms sympy, latex2sympy and Math-Verify
once; grading workers are ``fork``-ed from it on demand, so a worker is ready in milliseconds and any number of
worker deaths over a process's life costs nothing but a fork. Work goes out in chunks (one message per chunk,
one small result message per item). The parent enforces the timeout with ``multiprocessing.connection.wait``
(works from any thread, no signals). An item still running after a short while is left to run in a *slow lane*
while a fresh worker takes its place, so the slow items of one call run side by side and the call's worst case
is about one timeout, not one timeout per slow item. Items over the timeout score 0 and are counted apart
(``timed_out``), as are worker deaths (``died``).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .grader import Outcome, call_with_outcome, grade_answer

logger = logging.getLogger(__name__)

GradeFn = Callable[[str, Any], float]
_STARTUP_TIMEOUT_S = 120.0  # the template process imports sympy & co. before it reports ready
_MAX_START_FAILURES = 3  # consecutive template start-up failures (no success in between) before giving up
_MAX_SLOW_LANE = 16  # most items running side by side in the slow lane
_MAX_CHUNK = 32
# The template needs only the grader: register the package without running its __init__ (which could import
# torch/TRL and cost seconds).
# SIGTERM is ignored from the template's first line (its forked workers inherit that): a scheduler signals the
# whole process group, and the trainer finishes its step, grading included, before it saves and stops. A worker
# killed by it would score its item 0 and the resumed run would differ. The pool stops them with SIGKILL, and
# they exit on EOF when the trainer is gone.
_TEMPLATE_BOOTSTRAP = (
    "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "import importlib.util, sys, types\n"
    "spec = importlib.util.find_spec('trl_drgrpo')\n"
    "package = types.ModuleType('trl_drgrpo')\n"
    "package.__path__ = list(spec.submodule_search_locations)\n"
    "package.__spec__ = spec\n"
    "sys.modules['trl_drgrpo'] = package\n"
    "from trl_drgrpo.rewards.pool import _template_main\n"
    "_template_main({fd})\n"
)


def _grade_items(fn: GradeFn, conn: Connection) -> None:
    """Worker loop: receive chunks of ``(key, answer, gold)``, send ``(key, score, outcome)`` per item; ``None``
    stops."""
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for key, answer, gold in chunk:
            score, outcome = call_with_outcome(fn, answer, gold)
            try:
                conn.send((key, score, outcome.value))
            except OSError:
                return


def _template_main(fd: int) -> None:
    """Template process: set up like the parent, warm the grader, then fork one worker per ``"fork"`` request
    and pass its end of a fresh socket pair back with ``SCM_RIGHTS``."""
    control = socket.socket(fileno=fd)
    conn = Connection(os.dup(fd))
    sys_path, grade_fn_bytes = conn.recv()
    sys.path[:] = sys_path
    fn = pickle.loads(grade_fn_bytes) if grade_fn_bytes else grade_answer
    from .symbolic import warm

    try:
        warm()
    except Exception:
        pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished workers
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request != "fork":
            return
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                control.close()
                conn.close()
                ours.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _grade_items(fn, Connection(theirs.detach()))
            finally:
                os._exit(0)
        theirs.close()
        socket.send_fds(control, [str(pid).encode()], [ours.fileno()])
        ours.close()


class _Template:
    """The template process and its control socket."""

    def __init__(self, grade_fn_bytes: bytes):
        parent, child = socket.socketpair()
        command = _TEMPLATE_BOOTSTRAP.format(fd=child.fileno())
        self.process = subprocess.Popen(
            [sys.executable, "-c", command], pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL
        )
        child.close()
        self.socket = parent
        self.conn = Connection(os.dup(parent.fileno()))
        self.conn.send((list(sys.path), grade_fn_bytes))
        self.started_at = time.monotonic()

    def wait_ready(self) -> bool:
        """Block until the template reports ready (True) or dies / takes too long (False)."""
        while True:
            left = self.started_at + _STARTUP_TIMEOUT_S - time.monotonic()
            if left <= 0 or not self.conn.poll(left):
                return False
            try:
                return self.conn.recv() == "ready"
            except (EOFError, OSError):
                return False

    def fork(self) -> tuple[int, Connection]:
        self.conn.send("fork")
        message, fds, _, _ = socket.recv_fds(self.socket, 64, 1)
        if not fds:
            raise OSError("the grading template process is gone")
        return int(message.decode()), Connection(fds[0])

    def close(self) -> None:
        for closer in (self.conn.close, self.socket.close):
            try:
                closer()
            except OSError:
                pass
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except Exception:
            pass


class _Worker:
    """A forked grading process: its pid, connection and the keys it was sent, oldest first."""

    def __init__(self, pid: int, conn: Connection):
        self.pid, self.conn = pid, conn
        self.queue: collections.deque[int] = collections.deque()
        self.head_started = 0.0
        self.slow = False

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.kill()


class GradingPool:
    """Grading processes with a hard per-item timeout.

    ``run(items)`` grades ``(answer, gold)`` pairs with ``grade_fn`` (default
    :func:`~trl_drgrpo.rewards.grader.grade_answer`); after it, ``last_outcomes`` (an
    :class:`~trl_drgrpo.rewards.grader.Outcome` per item: graded, raised, timed out, died), ``last_durations``,
    ``last_timed_out`` and ``last_died`` describe each item (``last_failed`` is the union of the last two). ``timed_out``, ``died`` and
    ``template_restarts`` count over the pool's life.
    """

    def __init__(self, num_workers: int, timeout_s: float, grade_fn: GradeFn | None):
        if num_workers < 1:
            raise ValueError(f"a GradingPool needs at least one worker, got {num_workers}")
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.slow_after_s = min(0.1, timeout_s / 4)
        self.max_slow_lane = 0  # most items ever running side by side in the slow lane
        self.grade_fn_bytes = pickle.dumps(grade_fn) if grade_fn is not None else b""
        self.timed_out = 0
        self.died = 0
        self.template_restarts = 0
        self._template: _Template | None = None
        self.workers: list[_Worker] = []

    # --- processes -----------------------------------------------------------------------------------------
    @property
    def killed(self) -> int:
        """Items whose worker was killed or died (hard-bound events)."""
        return self.timed_out + self.died

    def _ensure_template(self) -> _Template:
        failures = 0
        while self._template is None:
            template = _Template(self.grade_fn_bytes)
            if template.wait_ready():
                self._template = template
                break
            template.close()
            failures += 1
            self.template_restarts += 1
            if failures >= _MAX_START_FAILURES:
                raise RuntimeError(
                    "grading workers keep dying at start-up (is trl_drgrpo importable by "
                    f"{sys.executable}?); see their error output above"
                )
        return self._template

    def _fork(self) -> _Worker:
        for _ in range(2):
            template = self._ensure_template()
            try:
                return _Worker(*template.fork())
            except (OSError, EOFError, ValueError):  # the template died: start a new one
                template.close()
                self._template = None
                self.template_restarts += 1
        raise RuntimeError("could not fork a grading worker")

    def start(self) -> None:
        """Start the template and the workers now (otherwise the first ``run`` does)."""
        while len(self.workers) < self.num_workers:
            self.workers.append(self._fork())

    # --- grading -------------------------------------------------------------------------------------------
    def run(self, items: Sequence[tuple[str, Any]]) -> list[float]:
        """Grade ``items`` (answer, gold); an item over the timeout or whose worker dies scores 0."""
        n = len(items)
        scores = [0.0] * n
        self.last_durations: list[float] = [0.0] * n
        self.last_timed_out: list[bool] = [False] * n
        self.last_died: list[bool] = [False] * n
        self.last_outcomes: list[Outcome] = [Outcome.GRADED] * n
        if not n:
            self.last_failed: list[bool] = []
            return scores
        self.start()
        pending = collections.deque(range(n))
        done = 0
        chunk = max(1, min(_MAX_CHUNK, math.ceil(n / (4 * self.num_workers))))

        def release(worker: _Worker, failed_list: list[bool], now: float) -> None:
            nonlocal done
            head = worker.queue.popleft()
            failed_list[head] = True
            self.last_outcomes[head] = (
                Outcome.TIMED_OUT if failed_list is self.last_timed_out else Outcome.DIED
            )
            self.last_durations[head] = now - worker.head_started
            done += 1
            pending.extendleft(reversed(worker.queue))  # the rest of its chunk goes back, in order
            worker.queue.clear()
            worker.kill()
            self.workers.remove(worker)

        while done < n:
            now = time.monotonic()
            regular = [w for w in self.workers if not w.slow]
            while len(regular) < self.num_workers:
                worker = self._fork()
                self.workers.append(worker)
                regular.append(worker)
            for worker in regular:
                if not worker.queue and pending:
                    keys = [pending.popleft() for _ in range(min(chunk, len(pending)))]
                    try:
                        worker.conn.send([(k, *items[k]) for k in keys])
                    except OSError:
                        pending.extendleft(reversed(keys))
                        worker.kill()
                        self.workers.remove(worker)
                        continue
                    worker.queue.extend(keys)
                    worker.head_started = now
            busy = [w for w in self.workers if w.queue]
            deadlines = [w.head_started + self.timeout_s for w in busy]
            deadlines += [w.head_started + self.slow_after_s for w in busy if not w.slow]
            timeout = max(0.0, min(deadlines) - now) if deadlines else 0.0
            for conn in wait([w.conn for w in busy], timeout=timeout):
                worker = next(w for w in busy if w.conn is conn)
                try:
                    while worker.queue and conn.poll():
                        key, score, outcome = conn.recv()
                        if key != worker.queue[0]:
                            raise EOFError(f"out-of-order result {key}")
                        worker.queue.popleft()
                        received = time.monotonic()
                        scores[key] = score
                        self.last_outcomes[key] = Outcome(outcome)
                        self.last_durations[key] = received - worker.head_started
                        worker.head_started = received
                        done += 1
                except (EOFError, OSError):  # the worker died: its current item scores 0
                    self.died += 1
                    release(worker, self.last_died, time.monotonic())
                    continue
                if worker.slow and not worker.queue:  # a slow-lane item finished: retire its worker
                    worker.stop()
                    self.workers.remove(worker)
            now = time.monotonic()
            slow_lane = sum(w.slow for w in self.workers)
            for worker in [w for w in self.workers if w.queue]:
                if now - worker.head_started > self.timeout_s:
                    logger.warning("grading timed out after %.1fs; killing the worker", self.timeout_s)
                    self.timed_out += 1
                    release(worker, self.last_timed_out, now)
                elif (
                    not worker.slow
                    and now - worker.head_started > self.slow_after_s
                    and slow_lane < _MAX_SLOW_LANE
                ):
                    worker.slow = True  # let it finish its item aside; its other items go back to the queue
                    slow_lane += 1
                    self.max_slow_lane = max(self.max_slow_lane, slow_lane)
                    while len(worker.queue) > 1:
                        pending.appendleft(worker.queue.pop())
        self.last_failed = [a or b for a, b in zip(self.last_timed_out, self.last_died, strict=True)]
        return scores

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
        if self._template is not None:
            self._template.close()
            self._template = None


def _close_pool(pool: GradingPool) -> None:
    try:
        pool.close()
    except Exception:
        pass
