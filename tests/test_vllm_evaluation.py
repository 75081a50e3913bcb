"""Evaluation's vLLM backend on a real engine (vLLM's CPU build in `make test-vllm`, or a GPU).

One engine per module, built through the same path as ``evaluate(..., backend="vllm")`` (``make_backend``). The
model is the twin of tests/vllm_twin.py: it answers the trained ``math`` problems in R1 format and then keeps
writing, so where a response ends is decided by the stop handling under test.
"""

from __future__ import annotations

import json

import pytest

from tests.vllm_twin import TAIL, training_problems
from trl_drgrpo.evaluation import evaluate
from trl_drgrpo.evaluation.backends import (
    TransformersBackend,
    effective_stops,
    make_backend,
    resolve_backend,
    vllm_platform,
)
from trl_drgrpo.templates import get_template

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BUDGET = 64
MAX_MODEL_LEN = 2048


@pytest.fixture(scope="module")
def vllm_backend(vllm_twin_dir):
    backend = make_backend(
        "vllm", vllm_twin_dir, max_model_len=MAX_MODEL_LEN, dtype="float32", seed=0, show_progress=False
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf_backend(vllm_twin_dir):
    return TransformersBackend(
        vllm_twin_dir, device="cpu", dtype="float32", batch_size=8, show_progress=False
    )


@pytest.fixture(scope="module")
def r1_prompts(eval_suite_path):
    r1 = get_template("r1")
    return [r1.format(problem) for _, problem, _ in training_problems(eval_suite_path)]


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_vllm_is_chosen_by_name_wherever_it_runs_and_by_auto_only_on_an_accelerator(vllm_platform_name):
    assert vllm_platform() == vllm_platform_name
    assert resolve_backend("vllm") == "vllm"
    assert resolve_backend("auto") == ("transformers" if vllm_platform_name == "cpu" else "vllm")


def test_greedy_responses_agree_with_transformers(vllm_backend, hf_backend, eval_suite_path, tmp_path):
    """Same greedy responses from both backends through ``evaluate`` (trained and untrained problems)."""
    common = dict(data=str(eval_suite_path), max_tokens=BUDGET, show_progress=False)
    runs = {}
    for name, backend in (("vllm", vllm_backend), ("transformers", hf_backend)):
        evaluate(
            str(vllm_backend.engine_kwargs["model"]),
            "r1",
            "math,amc",
            backend,
            tmp_path / name,
            limit=12,
            **common,
        )
        runs[name] = {(r["benchmark"], r["index"]): r for r in _lines(tmp_path / name / "samples.jsonl")}
    assert runs["vllm"].keys() == runs["transformers"].keys() and len(runs["vllm"]) == 24
    same = [k for k in runs["vllm"] if runs["vllm"][k]["response"] == runs["transformers"][k]["response"]]
    print(f"greedy agreement vllm vs transformers: {len(same)}/{len(runs['vllm'])}")
    trained = {("math", i) for i, _, _ in training_problems(eval_suite_path) if i < 12}
    assert trained <= set(same), "every trained problem must get the same answer from both backends"
    assert len(same) >= 0.9 * len(runs["vllm"])
    for k in same:  # where the text agrees, the token count and the finish report agree too
        v, t = runs["vllm"][k], runs["transformers"][k]
        assert (v["response_tokens"], v["finished"], v["score"]) == (
            t["response_tokens"],
            t["finished"],
            t["score"],
        )


def test_r1_stop_string_ends_the_response_and_is_kept(vllm_backend, hf_backend, r1_prompts):
    stops = effective_stops(get_template("r1"))
    assert stops == ("</answer>",)
    for backend in (vllm_backend, hf_backend):
        for (gen,) in backend.generate(r1_prompts, 1, 0.0, 1.0, BUDGET, stops, 0):
            assert gen.finished and gen.text.endswith("</answer>") and TAIL.strip() not in gen.text, gen


def test_paper_endings_of_qwen_math_run_to_the_models_own_end(vllm_backend, hf_backend, r1_prompts):
    """Under ``qwen_math`` the paper sets no stop string: the twin writes on past ``</answer>`` to its EOS."""
    stops = effective_stops(get_template("qwen_math"))
    assert stops == ()
    outs = [
        backend.generate(r1_prompts, 1, 0.0, 1.0, 2 * BUDGET, stops, 0)
        for backend in (vllm_backend, hf_backend)
    ]
    for (v,), (t,) in zip(*outs, strict=True):
        assert v.finished and v.text.endswith(TAIL) and "</answer>" in v.text, v
        assert v == t


def test_truncation_at_the_budget_edge(vllm_backend, hf_backend, r1_prompts):
    """A stop string on the budget's last token finished (vLLM: finish_reason "stop"); one token less is cut
    (finish_reason "length"), and evaluate's records report it as not finished."""
    stops = ("</answer>",)
    full = [g for (g,) in vllm_backend.generate(r1_prompts, 1, 0.0, 1.0, BUDGET, stops, 0)]
    for prompt, gen in zip(r1_prompts, full, strict=True):
        for backend in (vllm_backend, hf_backend):
            (edge,) = backend.generate([prompt], 1, 0.0, 1.0, gen.num_tokens, stops, 0)[0]
            assert edge == gen, (type(backend).__name__, edge, gen)
            (cut,) = backend.generate([prompt], 1, 0.0, 1.0, gen.num_tokens - 1, stops, 0)[0]
            assert not cut.finished and cut.num_tokens == gen.num_tokens - 1, (type(backend).__name__, cut)
            assert gen.text.startswith(cut.text) and not cut.text.endswith("</answer>")


def test_evaluate_reports_truncated_responses(vllm_backend, eval_suite_path, tmp_path):
    budget = 24  # between the shortest and the longest trained answer
    summary = evaluate(
        vllm_backend.engine_kwargs["model"], "r1", "math", vllm_backend, tmp_path / "cut", data=str(eval_suite_path),
        max_tokens=budget, limit=11, show_progress=False,
    )  # fmt: skip
    records = _lines(tmp_path / "cut" / "samples.jsonl")
    cut = [r for r in records if not r["finished"]]
    assert cut and len(cut) < len(records)
    assert all(r["response_tokens"] == budget and not r["response"].endswith("</answer>") for r in cut)
    assert all(r["response_tokens"] <= budget for r in records)
    assert summary["benchmarks"]["math"]["truncated"] == pytest.approx(len(cut) / len(records))


def _sample(backend, eval_suite_path, out, limit, seed=3, **kwargs):
    evaluate(
        backend.engine_kwargs["model"], "r1", "amc", backend, out, data=str(eval_suite_path), n=4, temperature=1.0,
        max_tokens=16, limit=limit, seed=seed, show_progress=False, **kwargs,
    )  # fmt: skip
    return {(r["index"], r["sample"]): r["response"] for r in _lines(out / "samples.jsonl")}


def test_sampling_n_per_problem_with_per_problem_seeds(vllm_backend, eval_suite_path, tmp_path):
    """n > 1 samples per problem; each problem's samples depend on its own seed, not on its batch."""
    four = _sample(vllm_backend, eval_suite_path, tmp_path / "four", limit=4)
    again = _sample(vllm_backend, eval_suite_path, tmp_path / "again", limit=4)
    two = _sample(vllm_backend, eval_suite_path, tmp_path / "two", limit=2)
    other = _sample(vllm_backend, eval_suite_path, tmp_path / "other", limit=4, seed=4)
    assert len(four) == 16 and four == again
    assert all(four[k] == v for k, v in two.items())
    assert any(len({four[(i, s)] for s in range(4)}) > 1 for i in range(4)), "the n samples are not all alike"
    assert other != four


def test_resume_after_an_interruption_gives_the_uninterrupted_samples(
    vllm_backend, eval_suite_path, tmp_path
):
    whole = _sample(vllm_backend, eval_suite_path, tmp_path / "whole", limit=4)

    class Killed(Exception):
        pass

    def kill(records):
        raise Killed

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        _sample(vllm_backend, eval_suite_path, out, limit=4, chunk_size=2, on_chunk=kill)
    assert len(_lines(out / "samples.jsonl")) == 8  # the first chunk (2 problems x 4 samples) was saved
    assert _sample(vllm_backend, eval_suite_path, out, limit=4, chunk_size=2) == whole
