"""Tests of the MathReward TRL reward function and its killable worker pool."""

from __future__ import annotations

import copy
import os
import pickle
import threading
import time

import pytest

from trl_drgrpo.rewards import MathReward
from trl_drgrpo.rewards.grader import Outcome, grade_answer

HANG_MARKER = "__hang__"
DIE_MARKER = "__die__"
RAISE_MARKER = "__raise__"
GRADED, NO_ANSWER, RAISED, TIMED_OUT, DIED = (
    Outcome.GRADED,
    Outcome.NO_ANSWER,
    Outcome.RAISED,
    Outcome.TIMED_OUT,
    Outcome.DIED,
)


def hanging_grade(answer: str, gold) -> float:
    """Test-only grade function: sleeps forever / dies on the marker answers, grades normally otherwise."""
    if answer == HANG_MARKER:
        time.sleep(3600)
    if answer == DIE_MARKER:
        os._exit(3)
    if answer == RAISE_MARKER:
        raise ValueError("a grader that crashed")
    return grade_answer(answer, gold)


def counting_grade(answer: str, gold) -> float:
    """Test-only grade function that appends every graded pair to a file named by an env variable."""
    with open(os.environ["TRL_DRGRPO_TEST_GRADE_LOG"], "a") as f:
        f.write(f"{answer}\t{gold}\n")
    return grade_answer(answer, gold)


COMPLETIONS = [r"so \boxed{1}", r"\boxed{2}", "no answer at all", r"\boxed{\frac{1}{2}}"]
GOLDS = ["1", "1", "1", "0.5"]
EXPECTED = [1.0, 0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def reward():
    with MathReward(num_workers=2, timeout_s=2.0) as r:
        yield r


def test_plain_and_conversational_completions(reward):
    assert reward.__name__ == "math_reward"
    assert reward(COMPLETIONS, answer=GOLDS) == EXPECTED
    conversational = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    assert reward(conversational, answer=GOLDS) == EXPECTED


def test_trl_keywords_and_log_extra(reward):
    logged: dict[str, list] = {}
    metrics: dict[str, float] = {}
    rewards = reward(
        prompts=["p"] * 4,
        completions=COMPLETIONS,
        completion_ids=[[1]] * 4,
        answer=GOLDS,
        trainer_state=None,
        log_extra=lambda column, values: logged.setdefault(column, []).extend(values),
        log_metric=lambda name, value: metrics.__setitem__(name, value),
    )
    assert rewards == EXPECTED
    assert logged["extracted_answer"] == ["1", "2", "", r"\frac{1}{2}"]
    assert metrics["math_reward/no_answer_frac"] == 0.25
    assert metrics["math_reward/grader_errors"] == 0.0


def test_list_and_float_golds(reward):
    completions = [r"\boxed{142}", r"\boxed{0.02}", r"\boxed{0.03}"]
    assert reward(completions, answer=[142.0, ["0.01\n", "0.02\n"], ["0.01\n", "0.02\n"]]) == [1.0, 1.0, 0.0]


def test_custom_answer_column_and_r1_template():
    r = MathReward(template="r1", answer_column="solution", num_workers=0)
    completions = [" ok </think> <answer> 7 </answer>", r" \boxed{7}", " ok <answer> 7 </answer>"]
    assert r(completions, solution=["7"] * 3) == [1.0, 0.0, 0.0]


def test_bad_inputs_are_clear_errors(reward):
    with pytest.raises(KeyError, match="'answer'"):
        reward(COMPLETIONS, solution=GOLDS)
    with pytest.raises(ValueError, match="4 completions but 3"):
        reward(COMPLETIONS, answer=GOLDS[:3])
    with pytest.raises(ValueError, match="num_workers"):
        MathReward(num_workers=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        MathReward(timeout_s=0)


def test_in_process_mode_matches_pool(reward):
    assert MathReward(num_workers=0)(COMPLETIONS, answer=GOLDS) == reward(COMPLETIONS, answer=GOLDS)


def test_call_from_a_non_main_thread(reward):
    results: list = []
    thread = threading.Thread(target=lambda: results.append(reward(COMPLETIONS, answer=GOLDS)))
    thread.start()
    thread.join(timeout=60)
    assert results == [EXPECTED]


def test_duplicates_are_graded_once(tmp_path, monkeypatch):
    log = tmp_path / "graded.tsv"
    monkeypatch.setenv("TRL_DRGRPO_TEST_GRADE_LOG", str(log))
    group = [
        r"\boxed{4}",
        r"\boxed{4}",
        r"\boxed{5}",
        "none",
        r"\boxed{4}",
        r"\boxed{5}",
        "none",
        r"\boxed{4}",
    ]
    golds = ["4"] * 8
    with MathReward(num_workers=1, grade_fn=counting_grade) as r:
        assert r(group, answer=golds) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert sorted(log.read_text().splitlines()) == ["4\t4", "5\t4"]


def test_stuck_item_is_killed_and_pool_recovers():
    with MathReward(num_workers=2, timeout_s=1.0, grade_fn=hanging_grade) as r:
        assert r([r"\boxed{3}"], answer=["3"]) == [1.0]  # warm the pool up
        completions = [r"\boxed{1}", r"\boxed{" + HANG_MARKER + "}", r"\boxed{2}", r"\boxed{3}"]
        start = time.perf_counter()
        scores = r(completions, answer=["1", "1", "2", "4"])
        elapsed = time.perf_counter() - start
        assert scores == [1.0, 0.0, 1.0, 0.0]
        assert r.last_outcomes == [GRADED, TIMED_OUT, GRADED, GRADED]
        assert elapsed < 10
        assert r._pool.killed == 1 and r._pool.timed_out == 1 and r.last_timed_out == 1
        # the replaced worker and the survivor both keep working, from another thread too
        results: list = []
        thread = threading.Thread(target=lambda: results.append(r(COMPLETIONS * 4, answer=GOLDS * 4)))
        thread.start()
        thread.join(timeout=60)
        assert results == [EXPECTED * 4]


def test_dead_worker_scores_zero_and_is_replaced():
    with MathReward(num_workers=1, timeout_s=5.0, grade_fn=hanging_grade) as r:
        scores = r([r"\boxed{" + DIE_MARKER + "}", r"\boxed{5}"], answer=["1", "5"])
        assert scores == [0.0, 1.0]
        assert r.last_outcomes == [DIED, GRADED]
        assert r._pool.killed == 1


def test_sigterm_to_the_process_group_leaves_the_grading_workers_alive():
    """A scheduler's SIGTERM reaches every process of the group; the trainer finishes its step (grading included)
    before it stops, so the template and its workers must outlive the signal and grade as before."""
    import signal

    with MathReward(num_workers=2, timeout_s=5.0) as r:
        assert r(COMPLETIONS, answer=GOLDS) == EXPECTED  # template and workers started
        pool = r._pool
        for pid in [pool._template.process.pid, *(w.pid for w in pool.workers)]:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)  # a default SIGTERM would have ended them by now
        assert r(COMPLETIONS * 3, answer=GOLDS * 3) == EXPECTED * 3
        assert pool.died == 0 and pool.template_restarts == 0 and r.last_died == 0


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_raising_grader_is_told_from_a_graded_zero(num_workers):
    """Same 0.0 reward, three different stories: graded, no answer, raised (in the pool and in-process)."""
    metrics: dict[str, float] = {}
    with MathReward(num_workers=num_workers, timeout_s=5.0, grade_fn=hanging_grade) as r:
        completions = [r"\boxed{" + RAISE_MARKER + "}", r"\boxed{2}", "no answer", r"\boxed{1}"]
        scores = r(completions, answer=["1", "1", "1", "1"], log_metric=metrics.__setitem__)
        assert scores == [0.0, 0.0, 0.0, 1.0]
        assert r.last_outcomes == [RAISED, GRADED, NO_ANSWER, GRADED]
        assert metrics["math_reward/grader_errors"] == 1.0


def test_pickle_deepcopy_and_close(reward):
    clone = copy.deepcopy(reward)
    restored = pickle.loads(pickle.dumps(reward))
    assert clone._pool is None and restored._pool is None  # copies own (lazily started) pools
    assert restored.__name__ == "math_reward" and restored.template.name == "qwen_math"
    assert restored(COMPLETIONS[:1], answer=GOLDS[:1]) == [1.0]
    template = restored._pool._template.process
    connections = [w.conn for w in restored._pool.workers]
    restored.close()
    assert template.poll() is not None and all(c.closed for c in connections)
    assert restored._pool is None
    assert restored(COMPLETIONS[:1], answer=GOLDS[:1]) == [1.0]  # restarts on demand
    restored.close()
    clone.close()


def test_pathological_batch_is_bounded(reward):
    completions = [
        r"\boxed{2^{2^{2^{2^{2^{2}}}}}}",
        r"\boxed{(10^{100})!}",
        r"\boxed{" + "9" * 20_000 + "}",
        "x" * 200_000 + r"\boxed{42}",
        r"\boxed{1}" * 5_000,
    ]
    start = time.perf_counter()
    scores = reward(completions, answer=["4", "1", "9", "42", "1"])
    assert scores == [0.0, 0.0, 0.0, 1.0, 1.0]
    # each 0 is a verdict (or a refused over-long answer), not a crash or a kill at the hard timeout
    assert reward.last_outcomes == [GRADED, GRADED, NO_ANSWER, GRADED, GRADED]
    assert reward.last_timed_out == reward.last_died == 0
    assert time.perf_counter() - start < 5


def test_workers_that_cannot_start_are_a_clear_error(monkeypatch):
    import trl_drgrpo.rewards.pool as rewards_module

    monkeypatch.setattr(rewards_module, "_TEMPLATE_BOOTSTRAP", "import sys; sys.exit(1)  # {fd}")
    r = MathReward(num_workers=1)
    with pytest.raises(RuntimeError, match="keep dying at start-up"):
        r([r"\boxed{1}"], answer=["1"])
    r.close()


def test_pool_recovers_from_any_number_of_worker_deaths():
    with MathReward(num_workers=1, timeout_s=5.0, grade_fn=hanging_grade) as r:
        for _ in range(6):  # more deaths than any start-up failure limit, spread over calls
            scores = r([r"\boxed{" + DIE_MARKER + "}", r"\boxed{5}", r"\boxed{6}"], answer=["1", "5", "5"])
            assert scores == [0.0, 1.0, 0.0]
            assert r.last_died == 1
        assert r._pool.died == 6
        os.kill(r._pool._template.process.pid, 9)  # even the template process may die
        r._pool._template.process.wait()
        for worker in list(r._pool.workers):  # and every worker with it
            worker.kill()
        r._pool.workers.clear()
        assert r([r"\boxed{7}"], answer=["7"]) == [1.0]
        assert r._pool.template_restarts >= 1


def test_slow_items_of_one_call_run_side_by_side():
    """Hanging items move to the slow lane, so they are timed out together, not one after another."""
    with MathReward(num_workers=1, timeout_s=2.0, grade_fn=hanging_grade) as r:
        completions = [r"\boxed{" + HANG_MARKER + "}"] * 4 + [r"\boxed{3}"]
        golds = [str(k) for k in range(4)] + ["3"]  # distinct golds: no deduplication
        assert r(completions, answer=golds) == [0.0, 0.0, 0.0, 0.0, 1.0]
        assert r.last_outcomes == [TIMED_OUT] * 4 + [GRADED]
        assert r.last_timed_out == 4
        assert r._pool.max_slow_lane >= 2
        assert r([r"\boxed{3}"], answer=["3"]) == [1.0]


def test_hard_bound_events_are_logged_apart():
    metrics: dict[str, float] = {}
    with MathReward(num_workers=1, timeout_s=1.0, grade_fn=hanging_grade) as r:
        r([r"\boxed{" + HANG_MARKER + "}", r"\boxed{1}"], answer=["1", "1"], log_metric=metrics.__setitem__)
    assert metrics["math_reward/hard_timeouts"] == 1.0
    assert metrics["math_reward/worker_deaths"] == 0.0


def test_answer_format_reaches_extraction():
    lenient = MathReward(template="r1", answer_format="lenient", num_workers=0)
    paper = MathReward(template="r1", num_workers=0)
    completions = [" ok </think>\n<answer> 7 </answer>", " ok </think> <answer> 7 </answer>"]
    assert paper(completions, answer=["7", "7"]) == [0.0, 1.0]
    assert lenient(completions, answer=["7", "7"]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="answer_format"):
        MathReward(answer_format="strict")
