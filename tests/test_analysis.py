"""Analysis toolkit on evaluation outputs: reflection, answering, passk, templates, and bad inputs.

Inputs are written by the real ``evaluate`` with a scripted backend (so the analyses read the format
evaluation actually writes); expected numbers are computed by hand in the comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trl_drgrpo.analysis.answering import answering
from trl_drgrpo.analysis.cli import main
from trl_drgrpo.analysis.io import AnalysisError
from trl_drgrpo.analysis.passk import passk
from trl_drgrpo.analysis.reflection import DEFAULT_KEYWORDS, find_keywords, keyword_pattern, reflection
from trl_drgrpo.analysis.templates_table import merge_table, templates
from trl_drgrpo.evaluation import evaluate, merge_summaries
from trl_drgrpo.evaluation.backends import Generation
from trl_drgrpo.templates import get_template


class ScriptedBackend:
    """Returns, for the prompt of each problem, the listed responses (sample k gets responses[k])."""

    def __init__(self, script: dict[str, list[str]]):
        self.script = script

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed):
        out = []
        for prompt in prompts:
            texts = next(v for k, v in self.script.items() if k in prompt)
            assert len(texts) == n
            out.append([Generation(t, len(t.split()), not t.endswith("...")) for t in texts])
        return out


def _suite(problems: dict[str, list[tuple[str, str]]]):
    from datasets import Dataset, DatasetDict

    return DatasetDict(
        {
            b: Dataset.from_dict({"problem": [p for p, _ in rows], "answer": [a for _, a in rows]})
            for b, rows in problems.items()
        }
    )


def run_eval(out: Path, template: str, script: dict[str, list[str]], problems, model="org/Base-1.5B") -> Path:
    n = len(next(iter(script.values())))
    evaluate(model, template, list(problems), ScriptedBackend(script), out, data=_suite(problems), n=n,
             temperature=1.0 if n > 1 else 0.0, show_progress=False)  # fmt: skip
    return out


def assert_png(path: str | Path) -> None:
    from PIL import Image

    path = Path(path)
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


PROBLEMS = {"math": [("What is 1 + 0?", "1"), ("What is 2 + 2?", "4")], "aime": [("What is 3 + 4?", "7")]}


# ---- reflection ----------------------------------------------------------------------------------


def test_keyword_detector_whole_words_case_insensitive():
    pattern = keyword_pattern(DEFAULT_KEYWORDS)
    assert find_keywords("Wait, let me RECHECK. I will think   again and Re-evaluate.", pattern) == [
        "wait",
        "recheck",
        "think again",
        "re-evaluate",
    ]
    assert find_keywords("awaiting rechecked waits; rethinking", pattern) == []
    assert find_keywords("Let me double-check, then go over the steps", pattern) == [
        "double-check",
        "go over the steps",
    ]
    assert find_keywords("Hmm, verify", keyword_pattern(["hmm", "verify"])) == ["hmm", "verify"]
    with pytest.raises(AnalysisError, match="empty"):
        keyword_pattern([" "])


def _reflection_eval(tmp_path: Path) -> Path:
    script = {
        # 1 + 0 = 1: reflecting responses 1 and 3 are right, the others wrong
        "1 + 0": [
            "Wait, let me recheck. \\boxed{1}",
            "So \\boxed{2}",
            "I double-check: \\boxed{1}",
            "awaiting \\boxed{3}",
        ],
        # 2 + 2 = 4: one reflecting response right, one wrong; one plain right, one wrong
        "2 + 2": ["Let me think again \\boxed{4}", "\\boxed{5}", "\\boxed{4}", "RETHINK \\boxed{9}"],
        # 3 + 4 = 7: no reflection, 3 of 4 right
        "3 + 4": ["\\boxed{7}", "\\boxed{7}", "\\boxed{7}", "\\boxed{8}"],
    }
    return run_eval(tmp_path / "eval", "qwen_math", script, PROBLEMS)


def test_reflection_numbers_and_outputs(tmp_path):
    folder = _reflection_eval(tmp_path)
    out = tmp_path / "reflection"
    summary = reflection([folder], out, show_progress=False)
    (label,) = summary["results"]
    assert label == "Base-1.5B / qwen_math"
    res = summary["results"][label]
    overall = res["overall"]
    # 12 responses, 4 reflect; with: [1, 1, 1, 0] -> 0.75; without: [0, 0, 0, 1, 1, 1, 1, 0] -> 0.5
    assert overall["responses"] == 12 and overall["with_reflection"] == 4
    assert overall["reflection_rate"] == pytest.approx(4 / 12)
    assert overall["accuracy_with_reflection"] == pytest.approx(0.75)
    assert overall["accuracy_without_reflection"] == pytest.approx(0.5)
    assert overall["accuracy"] == pytest.approx(7 / 12)
    math_b, aime_b = res["benchmarks"]["math"], res["benchmarks"]["aime"]
    assert math_b["reflection_rate"] == pytest.approx(0.5) and aime_b["reflection_rate"] == 0.0
    assert math_b["accuracy_without_reflection"] == pytest.approx(0.25)
    assert aime_b["accuracy_with_reflection"] is None and aime_b["accuracy_without_reflection"] == 0.75
    # per question (Figure 15): q0 with 1.0 vs without 0.0; q1 0.5 vs 0.5; q2 has no reflecting response
    pq = res["per_question"]
    assert pq["questions"] == 3 and pq["questions_with_both"] == 2
    assert pq["mean_accuracy_with_reflection"] == pytest.approx(0.75)
    assert pq["mean_accuracy_without_reflection"] == pytest.approx(0.25)
    assert (pq["with_better"], pq["without_better"], pq["equal"]) == (1, 0, 1)
    assert res["keyword_counts"] == {
        "double-check": 1,
        "recheck": 1,
        "rethink": 1,
        "think again": 1,
        "wait": 1,
    }

    written = json.loads((out / "summary.json").read_text())
    assert written["results"][label]["overall"] == overall
    table = (out / "reflection.md").read_text()
    assert "| Base-1.5B / qwen_math | all | 12 | 33.3 | 75.0 | 50.0 | 58.3 |" in table
    lines = (out / "responses.jsonl").read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["keywords"] == ["wait", "recheck"]
    for png in summary["plots"]:
        assert_png(png)

    custom = reflection([folder], None, keywords=["recheck"], show_progress=False)
    assert custom["results"][label]["overall"]["with_reflection"] == 1


def test_reflection_on_plain_jsonl_with_other_columns(tmp_path):
    path = tmp_path / "gens.jsonl"
    rows = [{"text": "wait \\boxed{1}", "ok": 1}, {"text": "\\boxed{1}", "ok": 0}, {"text": "no answer"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = reflection([path], None, response_column="text", score_column="ok", show_progress=False)
    overall = summary["results"]["gens"]["overall"]
    assert overall["reflection_rate"] == pytest.approx(1 / 3)
    assert overall["accuracy"] == pytest.approx(0.5)  # the third line has no grade
    with pytest.raises(AnalysisError, match="no text column 'response'"):
        reflection([path], None, show_progress=False)


# ---- answering -----------------------------------------------------------------------------------


def test_answering_per_template(tmp_path):
    problems = {"math": [("What is 1 + 0?", "1"), ("What is 2 + 2?", "4")]}
    # qwen_math: 3 of 4 responses box an answer; r1: only the <answer> form counts, 1 of 4
    qwen = run_eval(tmp_path / "qwen_math", "qwen_math", {
        "1 + 0": ["\\boxed{1}", "What is 1 + 1? And 1 + 2? ..."],
        "2 + 2": ["\\boxed{4}", "so \\boxed{5}"],
    }, problems)  # fmt: skip
    r1 = run_eval(tmp_path / "r1", "r1", {
        "1 + 0": ["so 1 </think> <answer>1</answer>", "\\boxed{1}"],
        "2 + 2": ["What is 2 + 3? ...", "</think> no answer tag"],
    }, problems)  # fmt: skip
    out = tmp_path / "answering"
    summary = answering([qwen, r1], out, show_progress=False)
    q, r = summary["results"]["Base-1.5B / qwen_math"], summary["results"]["Base-1.5B / r1"]
    assert q["overall"]["answer_rate"] == pytest.approx(0.75) and r["overall"][
        "answer_rate"
    ] == pytest.approx(0.25)
    assert q["overall"]["accuracy"] == pytest.approx(0.5) and q["overall"]["truncated"] == pytest.approx(0.25)
    assert q["overall"]["accuracy_when_answered"] == pytest.approx(2 / 3)
    assert summary["templates"] == {"qwen_math": pytest.approx(0.75), "r1": pytest.approx(0.25)}
    table = (out / "answering.md").read_text()
    assert "| Base-1.5B | qwen_math | 75.0 | 75.0 | 50.0 | 25.0 |" in table
    assert "| Base-1.5B | r1 | 25.0 | 25.0 | 25.0 | 25.0 |" in table
    assert_png(out / "answering.png")

    # a JSONL without a template needs --template
    lines = (qwen / "samples.jsonl").read_text().splitlines()
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"response": json.loads(x)["response"]}) + "\n" for x in lines))
    with pytest.raises(AnalysisError, match="pass --template"):
        answering([plain], None, show_progress=False)
    assert answering([plain], None, template="qwen_math", show_progress=False)["templates"] == {
        "qwen_math": pytest.approx(0.75)
    }


# ---- pass@k --------------------------------------------------------------------------------------


def test_passk_curves(tmp_path):
    right, wrong = "\\boxed{1}", "\\boxed{0}"
    problems = {"math": [("P one", "1"), ("P two", "1"), ("P three", "1")], "aime": [("P four", "1")]}
    script = {
        "P one": [wrong] * 4,  # c = 0
        "P two": [right, wrong, wrong, wrong],  # c = 1
        "P three": [right] * 4,  # c = 4
        "P four": [right, right, wrong, wrong],  # c = 2
    }
    base = run_eval(tmp_path / "base", "qwen_math", script, problems)
    tuned = run_eval(
        tmp_path / "tuned", "qwen_math", {k: [right] * 4 for k in script}, problems, model="org/Tuned"
    )
    out = tmp_path / "passk"
    summary = passk([base, tuned], out, show_progress=False)
    curves = summary["results"]["Base-1.5B / qwen_math"]
    # math: pass@1 = (0 + 1/4 + 1) / 3; pass@2 = (0 + (1 - C(3,2)/C(4,2)) + 1) / 3 = 0.5; pass@4 = 2/3
    assert curves["math"]["pass@k"] == pytest.approx([1.25 / 3, 0.5, (0 + 0.75 + 1) / 3, 2 / 3])
    # aime, c = 2 of 4: pass@1 = 0.5, pass@2 = 1 - 1/6, pass@3 = 1
    assert curves["aime"]["pass@k"] == pytest.approx([0.5, 5 / 6, 1.0, 1.0])
    assert curves["all"]["pass@k"][0] == pytest.approx((1.25 / 3 + 0.5) / 2)
    assert summary["results"]["Tuned / qwen_math"]["math"]["pass@k"] == pytest.approx([1.0] * 4)
    # the curve's pass@1 is evaluation's own avg@n accuracy
    saved = json.loads((base / "summary.json").read_text())
    assert saved["benchmarks"]["math"]["accuracy"] == pytest.approx(curves["math"]["pass@k"][0])
    table = (out / "passk.md").read_text()
    assert "| Base-1.5B / qwen_math | math | 4 | 41.7 | 50.0 | 66.7 |" in table
    assert_png(out / "passk.png")

    greedy = run_eval(tmp_path / "greedy", "qwen_math", {k: [right] for k in script}, problems)
    with pytest.raises(AnalysisError, match="needs n > 1"):
        passk([greedy], None, show_progress=False)


# ---- templates (Table 1) -------------------------------------------------------------------------


def _template_evals(tmp_path: Path) -> list[Path]:
    folders = []
    for template, text in (
        ("r1", "</think> <answer>1</answer>"),
        ("qwen_math", "\\boxed{1}"),
        ("no", "\\boxed{2}"),
    ):
        script = {"1 + 0": [text], "2 + 2": [text], "3 + 4": [text]}
        folders.append(run_eval(tmp_path / "evals" / template, template, script, PROBLEMS))
    return folders


def test_templates_table_matches_merge_and_cli(tmp_path, capsys):
    folders = _template_evals(tmp_path)
    out = tmp_path / "table"
    summary = templates(folders, out, show_progress=False)
    rows = {r["template"]: r for r in summary["rows"]}
    # "1" is right for 1 + 0 only: math 1/2, aime 0 -> average 25% (over 2 benchmarks: partial)
    assert rows["r1"]["benchmarks"] == {"aime": 0.0, "math": 0.5} and rows["r1"]["average"] == 0.25
    assert rows["no"]["benchmarks"] == {"aime": 0.0, "math": 0.0}
    table = (out / "templates.md").read_text()
    assert table == merge_summaries([f / "summary.json" for f in folders])  # the old --merge layout
    assert "| Base-1.5B | r1 | 0.0 | – | 50.0 | – | – | 25.0* |" in table
    assert_png(out / "templates.png")
    # a parent folder is searched; the summary.json paths of --merge work too
    assert merge_table([tmp_path / "evals"]).count("| Base-1.5B |") == 3
    assert merge_table([f / "summary.json" for f in folders]) == table

    from trl_drgrpo.evaluate import main as eval_main

    capsys.readouterr()
    eval_main(["--merge", *(str(f / "summary.json") for f in folders), "--output", str(tmp_path / "t.md")])
    assert (tmp_path / "t.md").read_text() == table
    assert capsys.readouterr().out == table


def test_templates_step_column_from_training_evals(tmp_path):
    run = tmp_path / "run"
    for step, text in ((10, "\\boxed{2}"), (20, "\\boxed{1}"), (5, "\\boxed{0}")):
        folder = run_eval(run / "eval" / f"step_{step}", "qwen_math", {"1 + 0": [text], "2 + 2": [text], "3 + 4": [text]},
                          PROBLEMS, model=str(run / f"checkpoint-{step}"))  # fmt: skip
        assert folder.is_dir()
    out = tmp_path / "steps"
    summary = templates([run], out, show_progress=False)
    assert [r["step"] for r in summary["rows"]] == [5, 10, 20]  # numeric order, not text order
    assert [r["model"] for r in summary["rows"]] == ["run"] * 3  # named after the run, not the checkpoint
    assert [r["benchmarks"]["math"] for r in summary["rows"]] == [0.0, 0.0, 0.5]
    lines = (out / "templates.md").read_text().splitlines()
    assert lines[0].startswith("| Model | Template | Step | AIME24 |")
    assert lines[4].startswith("| run | qwen_math | 20 | 0.0 | – | 50.0 |")
    assert_png(out / "templates.png")
    assert_png(out / "templates_steps.png")


# ---- bad inputs ----------------------------------------------------------------------------------


def _cli_error(capsys, argv: list[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "out")
    _cli_error(capsys, ["reflection", str(tmp_path / "missing"), "--output_dir", out], "not found")
    (tmp_path / "empty").mkdir()
    _cli_error(capsys, ["templates", str(tmp_path / "empty"), "--output_dir", out], "holds no evaluation")
    (tmp_path / "empty.jsonl").write_text("")
    _cli_error(capsys, ["reflection", str(tmp_path / "empty.jsonl"), "--output_dir", out], "no samples")
    (tmp_path / "bad.jsonl").write_text('{"response": "x"}\nnot json\n{"response": "y"}\n')
    _cli_error(capsys, ["reflection", str(tmp_path / "bad.jsonl"), "--output_dir", out], "not valid JSON")
    _cli_error(capsys, ["answering", str(tmp_path / "empty.jsonl"), "--template", "nope", "--output_dir", out],
               "no samples")  # fmt: skip

    # mixed templates: samples of an r1 folder appended to a qwen_math one
    r1, qwen, _ = _template_evals(tmp_path)
    with open(qwen / "samples.jsonl", "a") as f:
        f.write((r1 / "samples.jsonl").read_text())
    _cli_error(capsys, ["answering", str(qwen), "--output_dir", out], "mixes samples of several templates")
    # a config that contradicts the prompts
    config = json.loads((r1 / "config.json").read_text())
    (r1 / "config.json").write_text(json.dumps({**config, "template": "no"}))
    (r1 / "summary.json").unlink()
    _cli_error(capsys, ["reflection", str(r1), "--output_dir", out], "prompts use the 'r1' template")
    _cli_error(capsys, ["answering", str(tmp_path / "evals" / "no"), "--template", "r1", "--output_dir", out],
               "evaluated with the 'no' template, not 'r1'")  # fmt: skip
    # a file where the output folder should go
    (tmp_path / "file").write_text("x")
    _cli_error(capsys, ["templates", str(tmp_path / "evals" / "no"), "--output_dir", str(tmp_path / "file")],
               "is a file")  # fmt: skip
    # usage errors are argparse's (exit 2), --help exits 0
    assert main(["nosuchcommand"]) == 2
    assert main(["--help"]) == 0


def test_module_entry_point(tmp_path):
    import subprocess
    import sys

    folder = _reflection_eval(tmp_path)
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "trl_drgrpo.analysis", "reflection", str(folder), "--output_dir", str(out), "--no_progress"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| Base-1.5B / qwen_math | all | 12 | 33.3 |" in proc.stdout
    assert json.loads((out / "summary.json").read_text())["command"] == "reflection"
    assert math.isclose(
        json.loads((out / "summary.json").read_text())["results"]["Base-1.5B / qwen_math"]["overall"][
            "reflection_rate"
        ],
        1 / 3,
    )
    assert get_template("qwen_math").format("x") != "x"  # the template inference has something to tell apart


def test_templates_from_samples_only_and_non_eval_summaries(tmp_path):
    folders = _template_evals(tmp_path)
    expected = templates(folders, None, show_progress=False)["rows"]
    for f in folders:
        (f / "summary.json").unlink()  # summarised again from samples.jsonl
    (tmp_path / "evals" / "summary.json").write_text('{"before": 1}')  # not an evaluation summary: ignored
    templates(
        [tmp_path / "evals"], tmp_path / "evals" / "table", show_progress=False
    )  # its summary.json is no evaluation
    rows = templates([tmp_path / "evals"], None, show_progress=False)["rows"]
    assert [(r["template"], r["benchmarks"], r["average"]) for r in rows] == [
        (r["template"], r["benchmarks"], r["average"]) for r in sorted(expected, key=lambda r: r["template"])
    ]


def test_unforeseen_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import trl_drgrpo.analysis.cli as cli

    def boom(args):
        raise KeyError("field")

    monkeypatch.setattr(cli, "run_command", boom)
    monkeypatch.delenv("TRL_DRGRPO_TRACEBACK", raising=False)
    assert main(["passk", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unexpected input (KeyError: 'field')" in err
    monkeypatch.setenv("TRL_DRGRPO_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["passk", str(tmp_path)])
