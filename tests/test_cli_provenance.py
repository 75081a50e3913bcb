"""Evaluation records what it ran: versions, model revision, data fingerprints, grader, standard errors; and the
--dtype / --revision / --gpu_memory_utilization options reach the backends."""

from __future__ import annotations

import json
import math

import pytest
from datasets import Dataset, DatasetDict

from trl_drgrpo.evaluation import backends
from trl_drgrpo.evaluation.backends import Generation
from trl_drgrpo.evaluation.benchmarks import load_benchmark
from trl_drgrpo.evaluation.provenance import (
    accuracy_stderr,
    dataset_fingerprints,
    local_model_fingerprint,
    model_revision,
)
from trl_drgrpo.evaluation.run import EvaluationArguments, evaluate


class _EchoGold:
    """Answers the gold for even-numbered problems, nonsense for odd ones (deterministic)."""

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed):
        out = []
        for prompt in prompts:
            number = int(prompt.split("#")[1].split()[0])
            text = f"\\boxed{{{number * 2}}}" if number % 2 == 0 else "no idea"
            out.append([Generation(text, 5, True)] * n)
        return out


def _suite() -> DatasetDict:
    rows = range(6)
    split = Dataset.from_dict(
        {"problem": [f"Problem #{i} double it" for i in rows], "answer": [str(2 * i) for i in rows]}
    )
    return DatasetDict({"aime": split, "amc": split.select(range(4))})


def test_standard_error_over_problems():
    assert accuracy_stderr({0: [1.0], 1: [0.0], 2: [1.0], 3: [0.0]}) == pytest.approx(math.sqrt(1 / 3 / 4))
    # n samples per problem: the per-problem mean is the unit
    assert accuracy_stderr({0: [1.0, 1.0], 1: [0.0, 1.0]}) == pytest.approx(math.sqrt(0.125 / 2))
    assert accuracy_stderr({0: [1.0, 0.0]}) is None
    assert accuracy_stderr({0: [1.0], 1: [1.0]}) == 0.0


def test_summary_records_what_ran(tmp_path):
    summary = evaluate(
        "org/some-model", "qwen_math", "aime,amc", _EchoGold(), tmp_path / "out", data=_suite(), limit=5
    )
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["benchmarks"] == summary["benchmarks"]
    aime = saved["benchmarks"]["aime"]
    assert aime["accuracy"] == pytest.approx(3 / 5)  # problems 0, 2, 4 of the first five
    assert aime["accuracy_stderr"] == pytest.approx(math.sqrt(0.3 / 5))
    provenance = saved["provenance"]
    assert set(provenance["libraries"]) >= {"torch", "transformers", "trl", "vllm"}
    assert provenance["libraries"]["trl"] and provenance["libraries"]["torch"]
    assert provenance["model"] == {
        "source": "hub",
        "repo_id": "org/some-model",
        "revision": "main",
        "commit": None,
    }
    assert provenance["dtype"] == "auto"
    data = provenance["datasets"]
    assert data["aime"]["fingerprint"] == load_benchmark("aime", _suite())._fingerprint  # the rows evaluated
    assert (data["aime"]["num_rows"], data["aime"]["evaluated_rows"]) == (6, 5)
    assert (data["amc"]["num_rows"], data["amc"]["evaluated_rows"]) == (4, 4)
    grader = provenance["grader"]
    assert grader["reward"] == "math" and grader["function"] == "trl_drgrpo.rewards.grader.grade"
    assert grader["answer_format"] == "paper" and grader["template"] == "qwen_math"
    assert len(grader["source_sha256"]) == 16


def test_provenance_names_the_reward_that_graded(tmp_path):
    summary = evaluate(
        "org/m",
        "qwen_math",
        "amc",
        _EchoGold(),
        tmp_path / "out",
        data=_suite(),
        limit=2,
        reward="math_verify",
    )
    grader = summary["provenance"]["grader"]
    assert grader["reward"] == "math_verify"
    assert grader["function"] == "trl_drgrpo.rewards.registry.math_verify_grade"


def test_resuming_with_another_revision_or_dtype_is_refused(tmp_path):
    evaluate("org/m", "qwen_math", "amc", _EchoGold(), tmp_path / "out", data=_suite())
    with pytest.raises(ValueError, match="revision"):
        evaluate("org/m", "qwen_math", "amc", _EchoGold(), tmp_path / "out", data=_suite(), revision="v2")
    with pytest.raises(ValueError, match="dtype"):
        evaluate("org/m", "qwen_math", "amc", _EchoGold(), tmp_path / "out", data=_suite(), dtype="bfloat16")


def test_local_model_fingerprint_follows_its_config(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"0" * 10)
    first = model_revision(str(model))
    assert first["source"] == "local" and first["fingerprint"] == local_model_fingerprint(model)
    (model / "config.json").write_text('{"hidden_size": 16}')
    assert model_revision(str(model))["fingerprint"] != first["fingerprint"]


def test_hub_commit_from_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    refs = tmp_path / "models--org--m" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert model_revision("org/m")["commit"] == "a" * 40
    assert model_revision("org/m", "b" * 40)["commit"] == "b" * 40
    assert model_revision("org/other", "v1")["commit"] is None


def test_dataset_fingerprints_follow_the_data():
    assert dataset_fingerprints(_suite()) == dataset_fingerprints(_suite())
    changed = _suite()
    changed["aime"] = changed["aime"].map(lambda row: {"answer": row["answer"] + "0"})
    assert dataset_fingerprints(changed)["aime"] != dataset_fingerprints(_suite())["aime"]
    assert dataset_fingerprints(changed)["amc"] == dataset_fingerprints(_suite())["amc"]


def test_options_reach_the_backends(monkeypatch):
    seen = {}

    class Recorder:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(backends, "TransformersBackend", Recorder)
    backends.make_backend("transformers", "org/m", dtype="bfloat16", revision="v1")
    assert seen["dtype"] == "bfloat16" and seen["revision"] == "v1"
    backends.make_backend("transformers", "org/m")
    assert seen["dtype"] == "auto" and seen["revision"] is None
    kwargs = EvaluationArguments(
        model="m", output_dir="o", dtype="float16", revision="r", gpu_memory_utilization=0.5
    )
    kwargs = kwargs.to_kwargs()
    assert (kwargs["dtype"], kwargs["revision"], kwargs["gpu_memory_utilization"]) == ("float16", "r", 0.5)


def test_vllm_engine_gets_revision_dtype_and_memory_share():
    from trl_drgrpo.evaluation.vllm_backend import VLLMBackend

    backend = VLLMBackend("org/m", llm=object(), revision="v1", dtype="bfloat16", gpu_memory_utilization=0.5)
    engine = backend.engine_kwargs
    assert (engine["revision"], engine["tokenizer_revision"]) == ("v1", "v1")
    assert (engine["dtype"], engine["gpu_memory_utilization"]) == ("bfloat16", 0.5)
