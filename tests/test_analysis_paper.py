"""`trl-drgrpo analyze paper`: evaluations beside the paper's Tables 1 and 4, with noise and verdicts.

The evaluation folders are written here in the format `evaluate` and the in-training callback write (the real
`build_summary` over constructed per-problem scores), with scores chosen to be within noise of a paper row or
clearly off it; one folder comes from the real `evaluate` (scripted backend). Expected numbers are worked out
by hand in the comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.test_analysis import PROBLEMS, assert_png, run_eval
from trl_drgrpo.analysis.cli import main
from trl_drgrpo.analysis.io import AnalysisError
from trl_drgrpo.analysis.paper import compare_scores, paper, pooled_variance, verdict
from trl_drgrpo.analysis.paper_tables import PAPER_SIZES, ROWS_BY_KEY
from trl_drgrpo.evaluation.provenance import add_standard_errors
from trl_drgrpo.evaluation.scoring import build_summary

# problems solved per benchmark, on the paper's sizes (30 / 83 / 500 / 272 / 675)
QWEN_15B_QWEN_TEMPLATE = {
    "aime": 5,
    "amc": 27,
    "math": 165,
    "minerva": 34,
    "olympiad_bench": 154,
}  # paper: 6 27 165 34 154
OAT_ZERO_15B_BELOW = {"aime": 2, "amc": 30, "math": 300, "minerva": 50, "olympiad_bench": 150}


def write_eval(folder: Path, solved: dict[str, int], *, model="Qwen/Qwen2.5-Math-1.5B", template="qwen_math",
               sizes=None, step=None, **overrides) -> Path:  # fmt: skip
    """An evaluation folder: ``solved[b]`` of the first problems of ``b`` right; standalone (evaluate's config)
    or in-training (``step``: the callback's config, which records no backend, dtype or grader)."""
    sizes = sizes or PAPER_SIZES
    records = [
        {"benchmark": b, "index": i, "sample": 0, "score": float(i < k), "response_tokens": 10, "finished": True,
         "extracted_answer": "1"}
        for b, k in solved.items() for i in range(sizes[b])
    ]  # fmt: skip
    config = {"model": model, "model_name": Path(model).name, "template": template, "benchmarks": list(solved),
              "data": None, "n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 3000, "limit": None,
              "seed": None, "endings": "paper", "stop": []}  # fmt: skip
    if step is None:
        config |= {"backend": "vllm", "max_model_len": 4096, "dtype": None, "revision": None, "reward": "math",
                   "answer_format": "paper"}  # fmt: skip
    else:
        config["step"] = step
    config |= overrides
    summary = build_summary(records, list(solved), config["n"], config)
    add_standard_errors(summary, records)
    if step is None:
        summary["provenance"] = {"dtype": config["dtype"] or "auto"}
    else:
        summary["step"] = step
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def cells(result: dict) -> dict:
    return {c["benchmark"]: c for c in [*result["benchmarks"], result["average"]]}


# ---- the test itself ---------------------------------------------------------------------------------


def test_pooled_two_proportion_noise_by_hand():
    # 60% vs 74.2% on 500 problems: pooled 0.671, var 0.671 * 0.329 * 2/500 = 8.831e-4, 1.96 * 0.02972 = 0.0583
    var = pooled_variance(0.6, 500, 0.742, 500)
    assert var == pytest.approx(0.671 * 0.329 * 2 / 500)
    assert 1.959964 * math.sqrt(var) == pytest.approx(0.05825, abs=1e-4)
    assert verdict(-0.142, var, 1.959964) == "below" and verdict(0.142, var, 1.959964) == "above"
    assert verdict(0.05, var, 1.959964) == "within noise"
    assert verdict(0.0, 0.0, 1.96) == "within noise"  # 0 of n against 0.0: nothing to tell apart


def test_within_noise_one_aime_problem_short(tmp_path):
    # Table 1 "Qwen2.5-Math-1.5B / Qwen template": 20.0 32.5 33.0 12.5 22.8, avg 24.2; ours: one AIME problem fewer
    folder = write_eval(tmp_path / "qwen", QWEN_15B_QWEN_TEMPLATE)
    summary = paper([folder], tmp_path / "out", show_progress=False)
    (result,) = summary["comparisons"]
    assert result["row"] == "t1-qwen2.5-math-1.5b-qwen_math" and result["matched_by"] == "model and template"
    c = cells(result)
    assert c["aime"]["ours"] == pytest.approx(5 / 30) and c["aime"]["diff"] == pytest.approx(5 / 30 - 0.2)
    # AIME: pooled (5 + 6) / 60, var = 0.1833 * 0.8167 * 2/30 = 0.00998, noise 1.96 * 0.0999 = 0.1958
    assert c["aime"]["noise"] == pytest.approx(0.1958, abs=2e-4)
    assert {v["verdict"] for v in c.values()} == {"within noise"}
    assert result["flags"] == []
    table = (tmp_path / "out" / "paper.md").read_text()
    assert "| Qwen2.5-Math-1.5B / qwen_math | ours | 16.7 | 32.5 | 33.0 | 12.5 | 22.8 | 23.5 |  |" in table
    assert "| AIME24 | 16.7 (30) | 20.0 (30) | -3.3 | ±19.6 | within noise |" in table
    assert "Test: two-sided two-proportion z-test with pooled variance at the 5% level" in table
    assert "Protocol: as the paper's; not recorded or not checked: dtype auto (paper: bfloat16)" in table


def test_a_run_clearly_below_oat_zero_with_its_curve(tmp_path, capsys):
    run = tmp_path / "run"
    write_eval(run / "eval" / "step_0", QWEN_15B_QWEN_TEMPLATE, step=0)
    write_eval(
        run / "eval" / "step_100",
        {"aime": 3, "amc": 35, "math": 280, "minerva": 45, "olympiad_bench": 140},
        step=100,
    )
    write_eval(run / "eval" / "step_200", OAT_ZERO_15B_BELOW, step=200)
    out = tmp_path / "out"
    assert main(["paper", str(run), "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    last, base = summary["comparisons"]
    assert (last["step"], last["row"], base["step"], base["row"]) == (
        200,
        "oat-zero-1.5b",
        0,
        "t1-qwen2.5-math-1.5b-qwen_math",
    )
    assert last["matched_by"].startswith(
        "recipe: a run from Qwen/Qwen2.5-Math-1.5B with the qwen_math template"
    )
    c = cells(last)
    assert c["math"]["verdict"] == "below" and c["math"]["noise"] == pytest.approx(
        0.05825, abs=1e-4
    )  # 60.0 vs 74.2
    # average: ours (2/30 + 30/83 + 0.6 + 50/272 + 150/675) / 5 = 0.2868 vs 0.421
    assert c["average"]["ours"] == pytest.approx((2 / 30 + 30 / 83 + 0.6 + 50 / 272 + 150 / 675) / 5)
    assert c["average"]["verdict"] == "below"
    assert c["aime"]["verdict"] == "within noise"  # 6.7 vs 20.0 on 30 problems: noise ±15.4
    assert {i["setting"] for i in last["protocol"] if i["status"] == "not recorded"} >= {
        "max_model_len",
        "dtype",
    }
    assert "| Avg. | 28.7 | 42.1 | -13.4 |" in printed and f"plot: {out / 'paper_run.png'}" in printed
    assert_png(out / "paper_run.png")
    # --step picks another evaluation; --row replaces the match (and step 0 is then not added)
    summary = paper([run], None, step=100, row="oat-zero-1.5b", show_progress=False)
    assert [(r["step"], r["row"], r["matched_by"]) for r in summary["comparisons"]] == [
        (100, "oat-zero-1.5b", "named with --row")
    ]


def test_protocol_differences_are_flagged_next_to_the_verdict(tmp_path):
    folder = write_eval(tmp_path / "e", QWEN_15B_QWEN_TEMPLATE, max_tokens=2000, temperature=0.6, n=1,
                        max_model_len=None, backend="transformers", dtype="float32")  # fmt: skip
    (result,) = paper([folder], None, show_progress=False)["comparisons"]
    assert result["flags"] == [
        "max_tokens 2000 (paper: 3000)",
        "temperature 0.6 (paper: 0.0)",
        "max_model_len none (transformers backend) (paper: 4096)",
        "dtype float32 (paper: bfloat16)",
    ]
    assert (
        "Protocol differs: max_tokens 2000 (paper: 3000); temperature 0.6" in paper([folder], None)["table"]
    )
    # a trained row named by the user: the template difference is flagged
    (result,) = paper([folder], None, row="oat-zero-3b", show_progress=False)["comparisons"]
    assert result["flags"][0] == "template qwen_math (paper: r1)"


def test_limit_and_missing_benchmarks_give_a_marked_partial_comparison(tmp_path):
    # the real evaluate, 2 math and 1 aime problem (PROBLEMS), scripted answers: a --limit-sized evaluation
    folder = run_eval(tmp_path / "small", "qwen_math", {"1 + 0": ["\\boxed{1}"], "2 + 2": ["\\boxed{4}"], "3 + 4": ["\\boxed{0}"]},
                      PROBLEMS, model="Qwen/Qwen2.5-Math-1.5B")  # fmt: skip
    (result,) = paper([folder], None, show_progress=False)["comparisons"]
    c = cells(result)
    assert (
        c["math"]["ours"] == 1.0
        and c["math"]["reason"] == "2 of the paper's 500 problems"
        and "verdict" not in c["math"]
    )
    assert c["aime"]["reason"] == "1 of the paper's 30 problems"
    assert (
        c["amc"]["reason"] == "not evaluated"
        and c["average"]["reason"] == "not all five benchmarks evaluated"
    )
    text = paper([folder], None)["table"]
    assert (
        "| MATH500 | 100.0 (2) | 33.0 (500) | +67.0 | – | no verdict: 2 of the paper's 500 problems |" in text
    )
    assert "| AMC | – | 32.5 (83) | – | – | no verdict: not evaluated |" in text
    # five benchmarks, one cut short: per-benchmark verdicts where sizes agree, none on the average
    short = dict(PAPER_SIZES, aime=10)
    folder = write_eval(tmp_path / "lim", dict(QWEN_15B_QWEN_TEMPLATE, aime=2), sizes=short, limit=None)
    c = cells(paper([folder], None)["comparisons"][0])
    assert "verdict" not in c["aime"] and c["math"]["verdict"] == "within noise"
    assert c["average"]["reason"] == "not all five benchmarks on the paper's problems"


def test_the_papers_doubtful_value_gets_no_verdict():
    ours = {b: (v / 100, PAPER_SIZES[b]) for b, v in {"aime": 0.2, "amc": 45.8, "math": 69.0, "minerva": 21.3,
                                                        "olympiad_bench": 34.7}.items()}  # fmt: skip
    result = compare_scores(ours, ROWS_BY_KEY["t1-qwen2.5-math-7b-no"])
    c = cells(result)
    assert "verdict" not in c["aime"] and "doubtful" in c["aime"]["reason"]
    assert c["math"]["verdict"] == "within noise" and "verdict" in c["average"]


def test_bad_inputs_are_one_line(tmp_path, capsys):
    def error(argv, match):
        assert main(["paper", *argv, "--output_dir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err

    other = write_eval(tmp_path / "other", QWEN_15B_QWEN_TEMPLATE, model="org/Other-1B")
    error([str(other)], "no paper row for the model 'Other-1B'")
    chat = write_eval(tmp_path / "chat", QWEN_15B_QWEN_TEMPLATE, template="no", model="Qwen/Qwen2.5-Math-7B")
    assert (
        paper([chat], None)["comparisons"][0]["row"] == "t1-qwen2.5-math-7b-no"
    )  # the same model, another template
    # a trained policy of a recipe the paper prints no row for (1.5B, r1 template): no silent fallback
    run = tmp_path / "r1run"
    write_eval(run / "eval" / "step_50", QWEN_15B_QWEN_TEMPLATE, template="r1", step=50)
    error([str(run)], "a trained policy (step 50) of Qwen/Qwen2.5-Math-1.5B with the r1 template")
    error([str(other), "--row", "nope"], "unknown paper row 'nope'")
    error([str(other), "--recipe", str(tmp_path / "missing.yaml")], "recipe not found")
    error([str(run), "--step", "7"], "no evaluation at step 7")
    error([str(other), "--confidence", "1.5"], "confidence must be between 0 and 1")
    # a recipe names the base model of a standalone evaluation of a trained folder
    trained = write_eval(tmp_path / "trained", OAT_ZERO_15B_BELOW, model=str(tmp_path / "outputs" / "my-run"))
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "qwen2.5-math-1.5b" / "drgrpo_qwen_math.yaml"
    (result,) = paper([trained], None, recipe=recipe)["comparisons"]
    assert result["row"] == "oat-zero-1.5b" and result["matched_by"].startswith(
        "recipe drgrpo_qwen_math.yaml"
    )
    with pytest.raises(AnalysisError, match="no paper row for the model 'my-run'"):
        paper([trained], None)


def test_model_card_carries_the_comparison_when_the_run_evaluated_itself(tmp_path):
    from types import SimpleNamespace

    from trl_drgrpo.training.model_card import write_model_card

    def trainer_for(out: Path):
        args = SimpleNamespace(output_dir=str(out), length_normalization=False, std_normalization=False)
        model = SimpleNamespace(config=SimpleNamespace(_name_or_path="Qwen/Qwen2.5-Math-1.5B"))
        return SimpleNamespace(args=args, model=model, is_world_process_zero=lambda: True)

    def trl_card(out: Path):
        return lambda **kw: (out / "README.md").write_text("card\n\n### Framework versions\n\n- TRL\n")

    run = tmp_path / "run"
    write_eval(run / "eval" / "step_0", QWEN_15B_QWEN_TEMPLATE, step=0)
    write_eval(run / "eval" / "step_300", OAT_ZERO_15B_BELOW, step=300)
    write_model_card(trainer_for(run), trl_card(run), "run", "hiyouga/math12k")
    text = (run / "README.md").read_text()
    assert (
        text.index("## Dr. GRPO setup")
        < text.index("## Compared with the paper")
        < text.index("### Framework")
    )
    assert '@ step 300 vs arXiv 2503.20783v1, Table 4, row "Oat-Zero-1.5B"' in text
    assert "| Avg. | 28.7 | 42.1 | -13.4 | ±5.0 | below |" in text
    # no evaluation: no section; an evaluation the paper has no row for: one line saying so
    bare = tmp_path / "bare"
    bare.mkdir()
    write_model_card(trainer_for(bare), trl_card(bare), "bare", None)
    assert "Compared with the paper" not in (bare / "README.md").read_text()
    other = tmp_path / "other"
    write_eval(other / "eval" / "step_10", QWEN_15B_QWEN_TEMPLATE, model="org/Tiny", step=10)
    write_model_card(trainer_for(other), trl_card(other), "other", None)
    assert "No comparison with the paper's Tables 1 and 4: " in (other / "README.md").read_text()


def test_eval_templates_layout_table1_rows_beside_ours(tmp_path, capsys):
    # make eval-templates: r1 / qwen_math / no folders of one model, then `paper --table 1 --skip_unmatched`
    evals = tmp_path / "eval" / "Qwen2.5-Math-1.5B"
    write_eval(
        evals / "r1", {"aime": 0, "amc": 8, "math": 106, "minerva": 18, "olympiad_bench": 15}, template="r1"
    )
    write_eval(evals / "qwen_math", QWEN_15B_QWEN_TEMPLATE)
    write_eval(
        evals / "no", {"aime": 5, "amc": 36, "math": 309, "minerva": 41, "olympiad_bench": 192}, template="no"
    )
    out = tmp_path / "paper"
    argv = ["paper", "--table", "1", "--skip_unmatched", *(str(evals / t) for t in ("r1", "qwen_math", "no"))]
    assert main([*argv, "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [r["row"] for r in json.loads((out / "summary.json").read_text())["comparisons"]]
    assert rows == ["t1-qwen2.5-math-1.5b-r1", "t1-qwen2.5-math-1.5b-qwen_math", "t1-qwen2.5-math-1.5b-no"]
    assert (
        "|  | paper: Table 1, Qwen2.5-Math-1.5B / R1 template | 0.0 | 9.6 | 21.2 | 6.6 | 2.2 | 7.9 | within noise |"
        in printed
    )
    # a model Table 1 does not have: said in one line, nothing compared, exit 0 (the make target goes on)
    llama = write_eval(
        tmp_path / "llama" / "r1", QWEN_15B_QWEN_TEMPLATE, model="meta-llama/Llama-3.2-3B", template="r1"
    )
    assert main(["paper", "--table", "1", "--skip_unmatched", str(llama), "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Left out (no paper row): Llama-3.2-3B / r1: no paper row for the model 'Llama-3.2-3B'" in printed
    assert (
        main(["paper", "--table", "1", str(llama), "--output_dir", str(out)]) == 2
    )  # without the flag: an error


def test_a_malformed_summary_is_one_line(tmp_path, capsys):
    folder = write_eval(tmp_path / "bad", QWEN_15B_QWEN_TEMPLATE)
    summary = json.loads((folder / "summary.json").read_text())
    summary["benchmarks"]["math"]["accuracy"] = 1.5
    (folder / "summary.json").write_text(json.dumps(summary))
    assert main(["paper", str(folder), "--output_dir", str(tmp_path / "o")]) == 2
    assert "math has accuracy 1.5 on 500 problems" in capsys.readouterr().err


def test_a_template_the_paper_did_not_evaluate_is_named(tmp_path):
    folder = write_eval(
        tmp_path / "oat", QWEN_15B_QWEN_TEMPLATE, model="sail/Qwen2.5-Math-1.5B-Oat-Zero", template="no"
    )
    with pytest.raises(
        AnalysisError,
        match=r"evaluated Qwen2.5-Math-1.5B-Oat-Zero with other templates only \(qwen_math\), not 'no'",
    ):
        paper([folder], None)
    folder = write_eval(tmp_path / "oat2", QWEN_15B_QWEN_TEMPLATE, model="sail/Qwen2.5-Math-1.5B-Oat-Zero")
    assert paper([folder], None)["comparisons"][0]["row"] == "oat-zero-1.5b"  # the published weights, by name
