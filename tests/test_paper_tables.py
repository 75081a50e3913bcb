"""The paper's Tables 1 and 4 as transcribed: catches slips (a digit typed wrong, a column shifted).

Two independent checks per row: every printed score is a whole number of problems out of its benchmark's size,
rounded to one decimal; and the printed average is the mean of the five, to the paper's rounding. The one row
the paper itself prints inconsistently is pinned as such, so a transcription slip cannot hide behind it.
"""

from __future__ import annotations

import pytest

from trl_drgrpo.analysis.paper_tables import (
    BENCHMARK_ORDER,
    PAPER_SIZES,
    ROWS,
    ROWS_BY_KEY,
    recipe_row,
    rows_for,
)


def attainable(score: float, size: int) -> bool:
    """``score`` (%, one decimal) is k/size for a whole k, rounded either way at a tie."""
    return any(abs(100 * k / size - score) <= 0.05 + 1e-9 for k in range(size + 1))


def average_matches(row) -> bool:
    """The printed average is the mean of the five printed scores, within the rounding of six numbers:
    each score is off by at most 0.05, so their mean is too, and the average is rounded once more."""
    mean = sum(row.scores[b] for b in BENCHMARK_ORDER) / len(BENCHMARK_ORDER)
    return abs(mean - row.average) <= 0.05 + 0.5 * 10 ** (-row.average_digits) + 1e-9


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.key)
def test_every_row_is_consistent_with_its_benchmarks_and_average(row):
    assert list(row.scores) == list(BENCHMARK_ORDER)
    assert all(0.0 <= v <= 100.0 for v in (*row.scores.values(), row.average))
    assert row.table in (1, 4) and row.label and row.source.startswith("arXiv 2503.20783v1, Table ")
    for b in BENCHMARK_ORDER:
        if b in row.doubtful:
            assert not attainable(row.scores[b], row.size(b))  # flagged only where the paper is inconsistent
        else:
            assert attainable(row.scores[b], row.size(b)), (row.key, b, row.scores[b])
    if row.doubtful:
        assert not average_matches(row)
    else:
        assert average_matches(row), (row.key, row.average)


def test_the_papers_inconsistent_row_reads_consistently_with_aime_20():
    # Qwen2.5-Math-7B, no template: printed AIME24 0.2 but average 38.2, the mean only with 20.0
    for key in ("t1-qwen2.5-math-7b-no", "t4-qwen2.5-math-7b-no"):
        row = ROWS_BY_KEY[key]
        fixed = dict(row.scores, aime=20.0)
        assert round(sum(fixed.values()) / 5, 1) == row.average
        assert set(row.doubtful) == {"aime"}


def test_rows_printed_in_both_tables_agree():
    pairs = [("t1-qwen2.5-math-1.5b-qwen_math", "t4-qwen2.5-math-1.5b"), ("t1-qwen2.5-math-1.5b-no", "t4-qwen2.5-math-1.5b-no"),
             ("t1-qwen2.5-math-7b-qwen_math", "t4-qwen2.5-math-7b"), ("t1-qwen2.5-math-7b-no", "t4-qwen2.5-math-7b-no")]  # fmt: skip
    for a, b in pairs:
        assert (
            ROWS_BY_KEY[a].scores == ROWS_BY_KEY[b].scores
            and ROWS_BY_KEY[a].average == ROWS_BY_KEY[b].average
        )


def test_headline_figures_and_sizes():
    assert ROWS_BY_KEY["oat-zero-7b"].scores["aime"] == 43.3  # the abstract's 43.3% on AIME 2024
    assert PAPER_SIZES == {"aime": 30, "amc": 83, "math": 500, "minerva": 272, "olympiad_bench": 675}
    assert len({r.key for r in ROWS}) == len(ROWS)


def test_lookup_by_model_template_and_recipe():
    assert [r.key for r in rows_for("Qwen/Qwen2.5-Math-1.5B", "r1")] == ["t1-qwen2.5-math-1.5b-r1"]
    assert [r.key for r in rows_for("qwen2.5-math-1.5b", "qwen_math")] == [
        "t1-qwen2.5-math-1.5b-qwen_math",
        "t4-qwen2.5-math-1.5b",
    ]
    assert [r.key for r in rows_for("Qwen2.5-Math-1.5B", "qwen_math", tables=(4,))] == [
        "t4-qwen2.5-math-1.5b"
    ]
    assert rows_for("Qwen/Qwen2.5-Math-1.5B", "chat") == [] and rows_for("org/Other", "r1") == []
    assert recipe_row("Qwen/Qwen2.5-Math-1.5B", "qwen_math").key == "oat-zero-1.5b"
    assert recipe_row("Qwen/Qwen2.5-Math-7B", "qwen_math").key == "oat-zero-7b"
    assert recipe_row("lkevinzc/Llama-3.2-3B-NuminaQA", "r1").key == "oat-zero-3b"
    assert recipe_row("meta-llama/Llama-3.2-3B", "r1").key == "t4-llama-3.2-3b-drgrpo"
    assert recipe_row("Qwen/Qwen2.5-Math-1.5B", "r1") is None  # the paper prints no table row for it
