"""Tests of the evaluation harness: data, backends, metrics, files, resume and the CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import sys
import types
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoTokenizer

from trl_drgrpo import evaluation as ev
from trl_drgrpo import get_template
from trl_drgrpo.evaluation import (
    BENCHMARKS,
    Generation,
    TransformersBackend,
    evaluate,
    load_benchmark,
    merge_summaries,
    pass_at_k,
    summarize_benchmark,
    truncate_at_stop,
)
from trl_drgrpo.evaluation import backends as backends_module
from trl_drgrpo.evaluation import vllm_backend as vb

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL = "aime,amc,math,minerva,olympiad_bench"


def _load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO_ROOT / "recipes" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir) -> TransformersBackend:
    return TransformersBackend(tiny_model_dir, batch_size=4, device="cpu", show_progress=False)


class CountingBackend:
    """Wraps a backend, counts prompts and fails after ``fail_after`` calls (a simulated kill)."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.calls, self.prompts = inner, fail_after, 0, []

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.prompts += list(prompts)
        return self.inner.generate(prompts, n, temperature, top_p, max_tokens, stop, seed)


class FakeBackend:
    """Returns fixed responses; records the stop strings it was given."""

    def __init__(self, responses: list[str]):
        self.responses, self.stops = responses, []

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed):
        self.stops.append(tuple(stop))
        return [
            [Generation(self.responses[k % len(self.responses)], 3, k % 2 == 0) for k in range(n)]
            for _ in prompts
        ]


# ---- metrics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 1, 0.25),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (8, 0, 4, 0.0),
        (3, 1, 3, 1.0),
        (6, 6, 1, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_bad_counts(n, c, k):
    with pytest.raises(ValueError, match="need 0 <= c <= n"):
        pass_at_k(n, c, k)


def _record(index, sample, score, tokens=10, finished=True, extracted="1"):
    return {
        "benchmark": "math",
        "index": index,
        "sample": sample,
        "score": score,
        "response_tokens": tokens,
        "finished": finished,
        "extracted_answer": extracted,
    }


def test_summarize_benchmark_hand_computed():
    records = [
        _record(0, 0, 1.0, tokens=4),
        _record(0, 1, 0.0, tokens=8, finished=False, extracted=None),
        _record(0, 2, 1.0, tokens=6),
        _record(1, 0, 0.0, tokens=2, extracted=None),
        _record(1, 1, 0.0, tokens=12, finished=False),
        _record(1, 2, 1.0, tokens=4),
    ]
    s = summarize_benchmark(records, n=3)
    assert s["accuracy"] == pytest.approx(3 / 6)
    assert s["pass@1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    # problem 0: c=2 -> 1 - C(1,2)/C(3,2) = 1; problem 1: c=1 -> 1 - C(2,2)/C(3,2) = 2/3
    assert s["pass@2"] == pytest.approx((1 + 2 / 3) / 2)
    assert s["pass@3"] == pytest.approx(1.0)
    assert s["mean_response_tokens"] == pytest.approx(36 / 6)
    assert s["max_response_tokens"] == 12
    assert s["well_formed"] == pytest.approx(4 / 6)
    assert s["truncated"] == pytest.approx(2 / 6)
    assert (s["count"], s["num_samples"]) == (2, 6)


# ---- stop strings ----------------------------------------------------------------------------


def test_truncate_at_stop_keeps_the_earliest_stop():
    assert truncate_at_stop("a</answer> b</answer>", ("</answer>",)) == ("a</answer>", True)
    assert truncate_at_stop("x STOP y END", ("END", "STOP")) == ("x STOP", True)
    assert truncate_at_stop("no stop here", ("</answer>",)) == ("no stop here", False)
    assert truncate_at_stop("text", ()) == ("text", False)


def test_transformers_backend_stops_at_stop_string(tiny_backend):
    prompt = "What is 1+1?"
    free = tiny_backend.generate([prompt], 1, 0.0, 1.0, 16, (), 0)[0][0]
    assert len(free.text) >= 6 and free.num_tokens >= 4  # the random model rambles
    stop = free.text[2:5]  # a piece of the greedy continuation, early in it
    expected_text, hit = truncate_at_stop(free.text, (stop,))
    assert hit
    stopped = tiny_backend.generate([prompt], 1, 0.0, 1.0, 16, (stop,), 0)[0][0]
    assert stopped.finished
    assert stopped.text == expected_text and stopped.text.endswith(stop)
    assert stopped.num_tokens < free.num_tokens
    tail = tiny_backend.tokenizer.decode(
        tiny_backend.tokenizer(prompt + stopped.text)["input_ids"][-stopped.num_tokens :]
    )
    assert stop in tail


def test_special_token_stops_end_generation_as_tokens(tiny_backend):
    tok = tiny_backend.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ev.split_special_stops(tok, ("<|im_end|>", "</answer>")) == ([im_end], ["</answer>"])
    assert ev.effective_stops(get_template("qwen_math")) == ()  # the paper's endings
    assert ev.effective_stops(get_template("qwen_math"), endings="chat_end") == ("<|im_end|>",)
    assert ev.effective_stops(get_template("r1"), ["x"]) == ("</answer>", "x")
    assert ev.effective_stops(get_template("no")) == ()
    ids = tok("12 + 3", add_special_tokens=False)["input_ids"]
    pad = tok.pad_token_id
    ended = {im_end, pad}
    gen = tiny_backend._to_generation([*ids, im_end, pad, pad], ended, ())
    assert gen == Generation("12 + 3", len(ids) + 1, True)
    assert tiny_backend._to_generation(ids, ended, ()) == Generation("12 + 3", len(ids), False)


def test_transformers_backend_greedy_n_and_budget(tiny_backend):
    out = tiny_backend.generate(["a", "bb", "ccc"], 2, 0.0, 1.0, 5, (), 0)
    assert [len(g) for g in out] == [2, 2, 2]
    for gens in out:
        assert gens[0] == gens[1]  # greedy samples are identical
        assert all(g.num_tokens <= 5 for g in gens)
        assert all(g.finished or g.num_tokens == 5 for g in gens)
    sampled = tiny_backend.generate(["a"], 3, 1.0, 1.0, 5, (), 0)
    assert len(sampled[0]) == 3


def test_left_padding_and_batching_do_not_change_greedy_output(tiny_model_dir):
    single = TransformersBackend(tiny_model_dir, batch_size=1, device="cpu", show_progress=False)
    batched = TransformersBackend(tiny_model_dir, batch_size=3, device="cpu", show_progress=False)
    prompts = ["1+1=", "a much longer prompt with many more tokens in it", "x"]
    assert batched.tokenizer.padding_side == "left"
    a = single.generate(prompts, 1, 0.0, 1.0, 6, (), 0)
    b = batched.generate(prompts, 1, 0.0, 1.0, 6, (), 0)
    assert [g[0].text for g in a] == [g[0].text for g in b]


def test_checkpoint_generation_config_does_not_leak_into_decoding(tiny_model_dir, tiny_backend):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.update(do_sample=True, temperature=0.3, top_k=5, repetition_penalty=1e4)
    odd = TransformersBackend(model, tiny_backend.tokenizer, batch_size=2, show_progress=False)
    prompts = ["1+1=", "Find x."]
    plain = tiny_backend.generate(prompts, 1, 0.0, 1.0, 16, (), 0)
    tok = tiny_backend.tokenizer
    ids = [
        tok(p + g[0].text, add_special_tokens=False)["input_ids"] for p, g in zip(prompts, plain, strict=True)
    ]
    assert any(len(set(x)) < len(x) for x in ids)  # a repetition penalty would have changed these
    assert odd.generate(prompts, 1, 0.0, 1.0, 16, (), 0) == plain


# ---- data ------------------------------------------------------------------------------------


def test_local_suite_loads_every_benchmark(eval_suite_path):
    sizes = {"aime": 30, "amc": 83, "math": 500, "minerva": 272, "olympiad_bench": 675}
    for name, size in sizes.items():
        ds = load_benchmark(name, str(eval_suite_path))
        assert ds.column_names == ["problem", "answer"]
        assert len(ds) == size


def _fake_hub_layouts() -> dict[str, datasets.Dataset]:
    return {
        "HuggingFaceH4/aime_2024": datasets.Dataset.from_dict(
            {
                "id": [60],
                "problem": ["P?"],
                "solution": ["S"],
                "answer": ["204"],
                "url": ["u"],
                "year": ["2024"],
            }
        ),
        "AI-MO/aimo-validation-amc": datasets.Dataset.from_dict(
            {"id": [0], "problem": ["Q?"], "answer": [142.0], "url": ["u"]}
        ),
        "HuggingFaceH4/MATH-500": datasets.Dataset.from_dict(
            {
                "problem": ["M?"],
                "solution": ["s"],
                "answer": ["\\frac12"],
                "subject": ["x"],
                "level": [1],
                "unique_id": ["i"],
            }
        ),
        "math-ai/minervamath": datasets.Dataset.from_dict({"question": ["Mi?"], "answer": ["3"]}),
        "math-ai/olympiadbench": datasets.Dataset.from_dict(
            {"id": [1], "question": ["O?"], "final_answer": [["$2$", "$3$"]], "subfield": ["a"]}
        ),
    }


def test_hub_column_mapping_with_fake_datasets(monkeypatch):
    layouts = _fake_hub_layouts()
    calls = []

    def fake_load_dataset(path, split=None, **kwargs):
        calls.append((path, split))
        return layouts[path]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = {name: load_benchmark(name)[0] for name in BENCHMARKS}
    assert calls == [(spec.hub_path, spec.hub_split) for spec in BENCHMARKS.values()]
    assert rows["aime"] == {"problem": "P?", "answer": "204"}
    assert rows["amc"] == {"problem": "Q?", "answer": 142.0}
    assert rows["math"] == {"problem": "M?", "answer": "\\frac12"}
    assert rows["minerva"] == {"problem": "Mi?", "answer": "3"}
    assert rows["olympiad_bench"] == {"problem": "O?", "answer": ["$2$", "$3$"]}


def test_hub_failure_names_the_dataset(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="HuggingFaceH4/MATH-500"):
        load_benchmark("math")


def test_missing_columns_and_splits_are_reported(tmp_path):
    bad = datasets.DatasetDict({"math": datasets.Dataset.from_dict({"text": ["q"], "solution": ["a"]})})
    with pytest.raises(ValueError, match=r"no problem column.*found columns \['text', 'solution'\]"):
        load_benchmark("math", bad)
    no_answer = datasets.DatasetDict({"math": datasets.Dataset.from_dict({"problem": ["q"], "sol": ["a"]})})
    with pytest.raises(ValueError, match="no answer column"):
        load_benchmark("math", no_answer)
    with pytest.raises(ValueError, match=r"no split for benchmark 'aime'; its splits are \['math'\]"):
        load_benchmark("aime", bad)
    single = tmp_path / "single"
    datasets.Dataset.from_dict({"problem": ["q"], "answer": ["a"]}).save_to_disk(str(single))
    with pytest.raises(ValueError, match="must be a DatasetDict"):
        load_benchmark("math", str(single))
    with pytest.raises(ValueError, match="data folder not found"):
        load_benchmark("math", str(tmp_path / "nowhere"))


# ---- evaluate: bad inputs --------------------------------------------------------------------


def test_bad_inputs_fail_clearly(tmp_path, tiny_model_dir, eval_suite_path):
    common = dict(data=str(eval_suite_path), limit=1, max_tokens=2, show_progress=False)
    with pytest.raises(ValueError, match="unknown benchmark 'gsm8k'; known benchmarks: aime, amc"):
        evaluate(tiny_model_dir, "qwen_math", "math,gsm8k", "transformers", tmp_path / "a", **common)
    with pytest.raises(ValueError, match="unknown template 'chatml'"):
        evaluate(tiny_model_dir, "chatml", "math", "transformers", tmp_path / "b", **common)
    with pytest.raises(ValueError, match="unknown backend 'tgi'; choose one of auto, vllm, transformers"):
        evaluate(tiny_model_dir, "qwen_math", "math", "tgi", tmp_path / "c", **common)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(ValueError, match="exists and is a file"):
        evaluate(tiny_model_dir, "qwen_math", "math", FakeBackend(["x"]), afile, **common)
    with pytest.raises(ValueError, match="n must be >= 1"):
        evaluate(tiny_model_dir, "qwen_math", "math", "transformers", tmp_path / "d", n=0, **common)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.skipif(ev.vllm_available(), reason="vLLM is available here")
def test_vllm_backend_unavailable_is_a_clear_error():
    assert ev.resolve_backend("auto") == "transformers"
    with pytest.raises(ValueError, match="needs the vllm package on a platform it supports"):
        ev.resolve_backend("vllm")


# ---- evaluate: end to end, files, resume -------------------------------------------------------


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_end_to_end_tiny_model_all_benchmarks(tmp_path, tiny_model_dir, eval_suite_path):
    out = tmp_path / "run"
    summary = evaluate(
        tiny_model_dir, "r1", ALL, "transformers", out, data=str(eval_suite_path), max_tokens=16, limit=2,
        batch_size=4, show_progress=False,
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "results.md",
        "samples.jsonl",
        "summary.json",
    ]
    samples = _lines(out / "samples.jsonl")
    assert len(samples) == 10
    assert {(r["benchmark"], r["index"]) for r in samples} == {
        (b, i) for b in ALL.split(",") for i in range(2)
    }
    keys = {"benchmark", "index", "problem", "gold", "prompt", "sample", "response", "response_tokens", "finished",
            "extracted_answer", "score"}  # fmt: skip
    assert all(set(r) == keys for r in samples)
    assert all(r["prompt"].startswith("A conversation between User and Assistant") for r in samples)
    assert all(0 < r["response_tokens"] <= 16 for r in samples)
    assert all(r["finished"] or r["response_tokens"] == 16 for r in samples)
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert set(saved["benchmarks"]) == set(ALL.split(","))
    for m in saved["benchmarks"].values():
        assert m["count"] == 2 and m["num_samples"] == 2
        assert {
            "accuracy",
            "pass@1",
            "mean_response_tokens",
            "max_response_tokens",
            "well_formed",
            "truncated",
        } <= set(m)
    accs = [m["accuracy"] for m in saved["benchmarks"].values()]
    assert saved["average"]["accuracy"] == pytest.approx(sum(accs) / len(accs))
    assert saved["config"]["template"] == "r1" and saved["config"]["max_tokens"] == 16
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == "| Model | Template | AIME24 | AMC | MATH500 | Minerva | OlympiadBench | Avg. |"
    row = [c.strip() for c in table[2].strip("|").split("|")]
    assert row[:2] == [Path(tiny_model_dir).name, "r1"]
    assert row[2:] == [f"{100 * a:.1f}" for a in accs] + [f"{100 * saved['average']['accuracy']:.1f}"]


def test_scores_and_table_with_known_answers(tmp_path, eval_suite_path):
    gold = str(load_benchmark("aime", str(eval_suite_path))[0]["answer"])
    backend = FakeBackend([f"so \\boxed{{{gold}}}", "no answer"])
    summary = evaluate(
        "some/model", "qwen_math", "aime", backend, tmp_path / "r", data=str(eval_suite_path), n=4,
        temperature=1.0, limit=1, show_progress=False,
    )  # fmt: skip
    m = summary["benchmarks"]["aime"]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["pass@1"] == pytest.approx(0.5)
    assert m["pass@2"] == pytest.approx(1 - math.comb(2, 2) / math.comb(4, 2))
    assert m["pass@4"] == pytest.approx(1.0)
    assert m["well_formed"] == pytest.approx(0.5)
    assert m["truncated"] == pytest.approx(0.5)
    samples = _lines(tmp_path / "r" / "samples.jsonl")
    assert [r["extracted_answer"] for r in samples] == [gold, None, gold, None]
    assert (
        "| model | qwen_math | 50.0 | – | – | – | – | 50.0* |" in (tmp_path / "r" / "results.md").read_text()
    )


def test_template_stop_strings_reach_the_backend(tmp_path, eval_suite_path):
    backend = FakeBackend(["<think> x </think> <answer> 1 </answer>"])
    evaluate(
        "m", "r1", "amc", backend, tmp_path / "r", data=str(eval_suite_path), limit=1, stop=["\n\nUser:"]
    )
    assert backend.stops == [("</answer>", "\n\nUser:")]
    evaluate("m", "qwen_math", "amc", backend, tmp_path / "q", data=str(eval_suite_path), limit=1)
    assert backend.stops[-1] == ()  # the paper's endings: the model's own EOS or the budget


def test_killed_run_resumes_without_duplicates(tmp_path, tiny_backend, eval_suite_path):
    out = tmp_path / "run"
    kwargs = dict(data=str(eval_suite_path), max_tokens=8, limit=2, chunk_size=1, show_progress=False)
    killed = CountingBackend(tiny_backend, fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate("tiny", "qwen_math", ALL, killed, out, **kwargs)
    first = _lines(out / "samples.jsonl")
    assert len(first) == 3 and not (out / "summary.json").exists()
    with open(out / "samples.jsonl", "a") as f:  # a write cut short by the kill
        f.write('{"benchmark": "amc", "index": 1, "sam')

    resumed = CountingBackend(tiny_backend)
    summary = evaluate("tiny", "qwen_math", ALL, resumed, out, **kwargs)
    assert len(resumed.prompts) == 7  # only the missing problems were generated
    samples = _lines(out / "samples.jsonl")
    keys = [(r["benchmark"], r["index"], r["sample"]) for r in samples]
    assert len(keys) == len(set(keys)) == 10
    assert samples[:3] == first
    assert all(m["count"] == 2 for m in summary["benchmarks"].values())

    again = CountingBackend(tiny_backend)
    evaluate("tiny", "qwen_math", ALL, again, out, **kwargs)
    assert again.prompts == []  # a finished run is not regenerated


def test_resume_refuses_a_different_configuration(tmp_path, eval_suite_path):
    out = tmp_path / "run"
    common = dict(data=str(eval_suite_path), limit=1, show_progress=False)
    evaluate("m", "qwen_math", "amc", FakeBackend(["\\boxed{1}"]), out, max_tokens=8, **common)
    with pytest.raises(ValueError, match=r"different configuration \(max_tokens: saved 8, now 16\)"):
        evaluate("m", "qwen_math", "amc", FakeBackend(["\\boxed{1}"]), out, max_tokens=16, **common)
    with pytest.raises(ValueError, match="template: saved 'qwen_math', now 'r1'"):
        evaluate("m", "r1", "amc", FakeBackend(["\\boxed{1}"]), out, max_tokens=8, **common)
    with pytest.raises(ValueError, match="model: saved 'm', now 'other'"):
        evaluate("other", "qwen_math", "amc", FakeBackend(["\\boxed{1}"]), out, max_tokens=8, **common)
    # More problems or benchmarks extend the same run.
    summary = evaluate("m", "qwen_math", "amc,aime", FakeBackend(["\\boxed{1}"]), out, max_tokens=8,
                       data=str(eval_suite_path), limit=2, show_progress=False)  # fmt: skip
    assert summary["benchmarks"]["amc"]["count"] == 2 and summary["benchmarks"]["aime"]["count"] == 2


# ---- merge and CLI ---------------------------------------------------------------------------


def test_merge_summaries_and_cli(tmp_path, eval_suite_path, capsys):
    paths = []
    for template in ("r1", "qwen_math", "no"):
        out = tmp_path / template
        evaluate("org/Model-1.5B", template, ALL, FakeBackend(["\\boxed{3} <answer>3</answer>"]), out,
                 data=str(eval_suite_path), limit=1, show_progress=False)  # fmt: skip
        paths.append(out / "summary.json")
    table = merge_summaries(paths)
    lines = table.splitlines()
    assert len(lines) == 5
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["r1", "qwen_math", "no"]
    assert all(line.startswith("| Model-1.5B |") for line in lines[2:])

    script = _load_script()
    script.main(["--merge", *map(str, paths), "--output", str(tmp_path / "table.md")])
    assert (tmp_path / "table.md").read_text() == table
    assert capsys.readouterr().out == table
    with pytest.raises(FileNotFoundError, match="summary file not found"):
        merge_summaries([tmp_path / "missing.json"])


def test_cli_from_yaml_config(tmp_path, tiny_model_dir, eval_suite_path):
    config = tmp_path / "eval.yaml"
    out = tmp_path / "out"
    config.write_text(
        f"model: {tiny_model_dir}\ntemplate: r1\nbenchmarks: amc\nbackend: transformers\n"
        f"data: {eval_suite_path}\nlimit: 1\nmax_tokens: 4\noutput_dir: {out}\n"
    )
    summary = _load_script().main(["--config", str(config), "--template", "no"])
    assert summary["config"]["template"] == "no"  # command line overrides the YAML
    assert summary["config"]["max_tokens"] == 4 and summary["benchmarks"]["amc"]["count"] == 1
    assert (out / "results.md").exists()


def test_cli_requires_model_and_output_dir():
    with pytest.raises(SystemExit):
        _load_script().main(["--template", "r1"])


# ---- vLLM (GPU only) -------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vllm_backend_end_to_end(tmp_path, tiny_model_dir, eval_suite_path):
    pytest.importorskip("vllm")
    out = tmp_path / "vllm"
    summary = evaluate(
        tiny_model_dir, "r1", "amc,math", "vllm", out, data=str(eval_suite_path), max_tokens=16, limit=2,
        max_model_len=1024, show_progress=False,
    )  # fmt: skip
    samples = _lines(out / "samples.jsonl")
    assert len(samples) == 4
    assert all(0 < r["response_tokens"] <= 16 for r in samples)
    assert all(r["finished"] or r["response_tokens"] == 16 for r in samples)
    assert all(
        r["response"].endswith("</answer>") for r in samples if r["finished"] and "</answer>" in r["response"]
    )
    assert summary["config"]["backend"] == "vllm"


class _FakeLLM:
    """Stands in for ``vllm.LLM`` and remembers the GPUs its process was given."""

    def __init__(self, **kwargs):
        self.devices, self.kwargs = os.environ["CUDA_VISIBLE_DEVICES"], kwargs

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        assert self.kwargs["enable_prefix_caching"] and sampling_params.include_stop_str_in_output
        tag = f"{self.devices}|tp={self.kwargs['tensor_parallel_size']}|stop={sampling_params.stop_token_ids}"
        out = [
            types.SimpleNamespace(text=f"{p}@{tag}", token_ids=[0] * len(p), finish_reason="stop")
            for p in prompts
        ]
        return [types.SimpleNamespace(outputs=[o] * sampling_params.n) for o in out]


class _InlineWorker(vb._VLLMWorker):
    """A data-parallel worker that runs the real worker loop in this process (no spawn, no GPU)."""

    def __init__(self, devices, engine_kwargs):
        self.devices, self.engine_kwargs = devices, engine_kwargs
        self.outbox = queue.Queue()
        self.process = types.SimpleNamespace(is_alive=lambda: False, exitcode=0)

    def submit(self, prompts, params):
        inbox = queue.Queue()
        inbox.put((prompts, params))
        inbox.put(None)
        vb._vllm_worker_main(self.devices, self.engine_kwargs, inbox, self.outbox)


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM = _FakeLLM
    vllm.SamplingParams = types.SimpleNamespace
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    return vllm


def test_vllm_data_parallel_shards_over_gpu_groups(tiny_model_dir, monkeypatch, fake_vllm):
    monkeypatch.setattr(vb, "_VLLMWorker", _InlineWorker)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    with pytest.raises(ValueError, match="needs 6 GPUs"):
        vb.VLLMBackend(tiny_model_dir, tensor_parallel_size=2, data_parallel_size=3)
    backend = vb.VLLMBackend(tiny_model_dir, tensor_parallel_size=2, data_parallel_size=2)
    out = backend.generate(["a", "bb", "ccc"], 2, 0.0, 1.0, 8, ("<|im_end|>",), 0)
    backend.close()
    im_end = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids("<|im_end|>")
    expected = [
        f"a@4,5|tp=2|stop=[{im_end}]",
        f"bb@6,7|tp=2|stop=[{im_end}]",
        f"ccc@4,5|tp=2|stop=[{im_end}]",
    ]
    assert [[g.text for g in gens] for gens in out] == [[e, e] for e in expected]
    assert [gens[0].num_tokens for gens in out] == [1, 2, 3] and all(g.finished for gens in out for g in gens)
    assert backend._workers == []


def test_vllm_single_engine_sampling_params(tiny_model_dir, monkeypatch, fake_vllm):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    seen = []

    class RecordingLLM(_FakeLLM):
        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_model_dir)

        def generate(self, prompts, sampling_params=None, use_tqdm=False):
            seen.append(sampling_params)
            return super().generate(prompts, sampling_params)

    llm = RecordingLLM(enable_prefix_caching=True, tensor_parallel_size=1)
    out = vb.VLLMBackend(llm=llm).generate(["q"], 3, 0.7, 0.9, 12, ("</answer>",), 5)
    assert len(out[0]) == 3
    p = seen[0]
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.seed) == (3, 0.7, 0.9, 12, 5)
    assert p.stop == ["</answer>"] and p.stop_token_ids is None and p.include_stop_str_in_output


@pytest.mark.parametrize(("given", "engine"), [({}, 4096), ({"max_model_len": 0}, None)])
def test_vllm_context_is_the_papers_4096_and_a_response_it_cuts_is_unfinished(
    tmp_path, tiny_model_dir, eval_suite_path, monkeypatch, fake_vllm, given, engine
):
    """The paper's evaluate_model.py runs vLLM with max_model_len=4096; a response that fills it stops with
    finish_reason "length" before the budget and counts as truncated (unfinished), not as finished."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(backends_module, "vllm_available", lambda: True)
    engines = []

    class ContextLLM(_FakeLLM):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            engines.append(kwargs)

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_model_dir)

        def generate(self, prompts, sampling_params=None, use_tqdm=False):
            cut = types.SimpleNamespace(text="so the answer is", token_ids=[0] * 4, finish_reason="length")
            return [types.SimpleNamespace(outputs=[cut] * sampling_params.n) for _ in prompts]

    fake_vllm.LLM = ContextLLM
    summary = evaluate(
        tiny_model_dir, "r1", "amc", "vllm", tmp_path / "out", data=str(eval_suite_path), limit=2, max_tokens=16,
        show_progress=False, **given,
    )  # fmt: skip
    assert [e["max_model_len"] for e in engines] == [engine]
    assert summary["config"]["max_model_len"] == engine
    samples = _lines(tmp_path / "out" / "samples.jsonl")
    assert [(r["response_tokens"], r["finished"]) for r in samples] == [(4, False), (4, False)]
    assert summary["benchmarks"]["amc"]["truncated"] == 1.0


@pytest.mark.slow
def test_sigkilled_cli_run_resumes(tmp_path, tiny_model_dir, eval_suite_path):
    """A real ``kill -9`` of the script mid-run, then a resume: every problem exactly once."""
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    args = ["--model", tiny_model_dir, "--template", "r1", "--benchmarks", "amc,math", "--backend", "transformers",
            "--data", str(eval_suite_path), "--limit", "4", "--max_tokens", "24", "--chunk_size", "1",
            "--output_dir", str(out)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "recipes" / "evaluate.py"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    samples = out / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    before = _lines(samples)
    assert 2 <= len(before) < 8 and not (out / "summary.json").exists()

    summary = _load_script().main([*args])
    after = _lines(samples)
    keys = [(r["benchmark"], r["index"]) for r in after]
    assert len(keys) == len(set(keys)) == 8
    assert after[: len(before)] == before
    assert summary["benchmarks"]["amc"]["count"] == summary["benchmarks"]["math"]["count"] == 4


# ---- crash safety: failed starts, per-problem seeds, file modes ---------------------------------


def test_a_failed_start_leaves_no_config_behind(tmp_path, tiny_model_dir, eval_suite_path):
    out = tmp_path / "run"
    common = dict(data=str(eval_suite_path), limit=1, max_tokens=2, show_progress=False)
    with pytest.raises(FileNotFoundError, match="model folder '/no/such/model' does not exist") as error:
        evaluate("/no/such/model", "qwen_math", "amc", "transformers", out, **common)
    assert "\n" not in str(error.value)
    assert not out.exists()
    summary = evaluate(
        tiny_model_dir, "qwen_math", "amc", "transformers", out, **common
    )  # the corrected command
    assert summary["benchmarks"]["amc"]["count"] == 1


def test_a_config_without_samples_does_not_bind_the_next_run(tmp_path, eval_suite_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(
        json.dumps({"model": "wrong/model", "n": 1})
    )  # an older version's failed start
    summary = evaluate(
        "m", "qwen_math", "amc", FakeBackend(["\\boxed{1}"]), out, data=str(eval_suite_path), limit=1
    )
    assert summary["benchmarks"]["amc"]["count"] == 1
    assert json.loads((out / "config.json").read_text())["model"] == "m"


def test_sampled_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path, tiny_backend, eval_suite_path):
    kwargs = dict(data=str(eval_suite_path), n=2, temperature=1.0, max_tokens=6, limit=3, chunk_size=2,
                  show_progress=False)  # fmt: skip
    evaluate("tiny", "no", "amc,math", CountingBackend(tiny_backend), tmp_path / "whole", **kwargs)
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            "tiny", "no", "amc,math", CountingBackend(tiny_backend, fail_after=3), tmp_path / "cut", **kwargs
        )
    assert 0 < len(_lines(tmp_path / "cut" / "samples.jsonl")) < 12
    evaluate("tiny", "no", "amc,math", CountingBackend(tiny_backend), tmp_path / "cut", chunk_size=5,
             **{k: v for k, v in kwargs.items() if k != "chunk_size"})  # fmt: skip

    def by_sample(folder):
        rows = _lines(folder / "samples.jsonl")
        return {(r["benchmark"], r["index"], r["sample"]): r["response"] for r in rows}

    whole, resumed = by_sample(tmp_path / "whole"), by_sample(tmp_path / "cut")
    assert len(whole) == 12 and resumed == whole
    assert len({whole[("amc", 0, 0)], whole[("amc", 0, 1)], whole[("math", 0, 0)]}) > 1  # really sampled


def test_per_problem_seeds_depend_only_on_the_problem():
    from trl_drgrpo.evaluation.run import item_seed, seeded_groups
    from trl_drgrpo.evaluation.scoring import Problem

    problems = [Problem("amc", i, "q", "1") for i in range(3)]
    assert (
        item_seed(0, "amc", 1) == item_seed(0, "amc", 1) != item_seed(0, "amc", 2) != item_seed(1, "amc", 2)
    )
    assert seeded_groups(problems, object(), 7, 0.0) == [(problems, 7)]  # greedy: one call, seed unused
    assert seeded_groups(problems, object(), 7, 1.0) == [
        ([p], item_seed(7, "amc", p.index)) for p in problems
    ]
    batched = types.SimpleNamespace(per_prompt_seeds=True)
    assert seeded_groups(problems, batched, 7, 1.0) == [
        (problems, [item_seed(7, "amc", i) for i in range(3)])
    ]


def test_vllm_takes_one_seed_per_prompt(fake_vllm, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    seen = []

    class ListLLM:
        def get_tokenizer(self):
            return types.SimpleNamespace(get_added_vocab=dict)

        def generate(self, prompts, sampling_params=None, use_tqdm=False):
            seen.append(sampling_params)
            out = types.SimpleNamespace(text="x", token_ids=[1], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[out] * p.n) for p in sampling_params]

    out = vb.VLLMBackend(llm=ListLLM()).generate(["a", "b"], 2, 1.0, 1.0, 4, (), [11, 12])
    assert [p.seed for p in seen[0]] == [11, 12] and len(out) == 2


def test_written_files_follow_the_umask(tmp_path, eval_suite_path):
    old = os.umask(0o022)
    try:
        evaluate("m", "qwen_math", "amc", FakeBackend(["\\boxed{1}"]), tmp_path / "r", data=str(eval_suite_path),
                 limit=1)  # fmt: skip
    finally:
        os.umask(old)
    for name in ("config.json", "samples.jsonl", "summary.json", "results.md"):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o644, name
