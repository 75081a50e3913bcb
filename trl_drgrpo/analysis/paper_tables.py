"""The paper's Tables 1 and 4 as data: what a reproduction is compared with (``trl-drgrpo analyze paper``).

Transcribed from *Understanding R1-Zero-Like Training: A Critical Perspective* (arXiv 2503.20783v1), read in
the PDF the authors committed to github.com/sail-sg/understand-r1-zero (``understand-r1-zero.pdf`` at commit
08db9b8, 2025-03-26, the arXiv v1 text dated March 21, 2025; its commit 39c9fb2 of 2025-03-22 prints the same
two tables) and checked against the table images of that repository (``assets/qwen-math-base-scores.png`` =
Table 1, ``assets/benchmark_table.png`` = Table 4). Scores are accuracies in % as printed (greedy, 3000
tokens). Table 4 is transcribed only as far as this toolkit's recipes go: its R1-Distill, Instruct,
SimpleRL-Zero, PRIME-Zero, OpenReasoner-Zero and Llama-3.2-3B-FineMath rows are not transcribed.
``tests/test_paper_tables.py`` checks every row against the benchmarks' sizes and its printed average.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The order of the paper's columns: AIME24, AMC, MATH500, Minerva, OlympiadBench (then Avg.).
BENCHMARK_ORDER = ("aime", "amc", "math", "minerva", "olympiad_bench")

# Problems per benchmark in the paper's evaluation suite (datasets/evaluation_suite of sail-sg/understand-r1-zero
# at dfca49d, loaded with datasets.load_from_disk). An evaluation on other data (the Hub copies, not checked
# offline) gets verdicts only on the benchmarks whose sizes agree.
PAPER_SIZES = {"aime": 30, "amc": 83, "math": 500, "minerva": 272, "olympiad_bench": 675}

# The evaluation protocol of both tables: the paper ("we use greedy decoding and limit the sampling budget to
# 3000 tokens", Section 2.2) and its evaluate_model.py (dfca49d: temperature 0, top_p 1, n_samples 1,
# max_tokens 3000, max_model_len 4096, vLLM dtype bfloat16; qwen_math / no: no stop string; r1: stop after
# </answer>, which is this toolkit's `endings: paper`).
PAPER_PROTOCOL = {
    "max_tokens": 3000,
    "temperature": 0.0,
    "top_p": 1.0,
    "n": 1,
    "max_model_len": 4096,
    "endings": "paper",
    "reward": "math",
    "answer_format": "paper",
    "dtype": "bfloat16",
}

SOURCE = "arXiv 2503.20783v1"


@dataclass(frozen=True)
class PaperRow:
    """One row of Table 1 or Table 4.

    ``key`` is the name ``--row`` takes; ``label`` the row as printed (group header, then row label);
    ``model`` the Hub id of the evaluated model (``None`` when the paper published no weights);
    ``base_model`` and ``template`` what a run of this toolkit must start from to be compared with a
    trained row (``trained``); ``doubtful`` maps a benchmark to why its printed value cannot be taken as is.
    """

    key: str
    table: int
    label: str
    model: str | None
    template: str | None
    scores: dict[str, float]
    average: float
    average_digits: int = 1
    trained: bool = False
    base_model: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    doubtful: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def source(self) -> str:
        return f'{SOURCE}, Table {self.table}, row "{self.label}"'

    def size(self, benchmark: str) -> int:
        """Problems behind the printed score of ``benchmark``."""
        return self.sizes.get(benchmark, PAPER_SIZES[benchmark])


def _scores(*values: float) -> dict[str, float]:
    return dict(zip(BENCHMARK_ORDER, values, strict=True))


_FOUR_SHOT = (
    "4-shot prompting is not a template of this toolkit. Its AMC scores are multiples of 2.5, i.e. a 40-problem "
    "AMC set, not the 83-problem one of the other rows (inferred from the values; the paper does not say)."
)
_QWEN_TEMPLATE_T4 = (
    'Table 4 marks no template for this row; its scores equal Table 1\'s "Qwen template" row, and '
    "evaluate_model.py's default template is qwen_math."
)
_NO_TEMPLATE_T4 = "'*' in Table 4: 'we employ the best template (no template)'."
_LLAMA_TEMPLATE = (
    "The paper does not print this row's template; r1 is inferred from the README's evaluation command for "
    "Oat-Zero-3B (--template r1) and the Llama recipe (examples/llama3.2-3b-numinaqa.sh, --prompt_template r1)."
)
_OAT_RECIPE = (
    "Table 4's caption: Oat-Zero models are RL-tuned by the paper's minimalist recipe (Section 1: Dr. GRPO, "
    "MATH level 3-5 questions, Qwen-Math template)."
)
_QWEN7B_NO_AIME = (
    "Printed AIME24 0.2 is not a score on 30 problems (a multiple of 3.33), and the printed average 38.2 is the "
    "mean of the five only if AIME24 were 20.0 (mean with 0.2: 34.2); the table's bold marks the Qwen "
    "template's 16.7 as the best AIME24. Both tables print it so (arXiv v1): no verdict on AIME24 for this row."
)

ROWS: tuple[PaperRow, ...] = (
    # ---- Table 1: "Base model + Template" (Qwen2.5-Math models, greedy, 3000 tokens) ----
    PaperRow("t1-qwen2.5-math-1.5b-4shot", 1, "Qwen2.5-Math-1.5B / (4-shot prompting)", "Qwen/Qwen2.5-Math-1.5B",
             "4-shot", _scores(0.0, 20.0, 50.4, 12.1, 15.9), 19.7, sizes={"amc": 40}, note=_FOUR_SHOT),
    PaperRow("t1-qwen2.5-math-1.5b-r1", 1, "Qwen2.5-Math-1.5B / R1 template", "Qwen/Qwen2.5-Math-1.5B", "r1",
             _scores(0.0, 9.6, 21.2, 6.6, 2.2), 7.9),
    PaperRow("t1-qwen2.5-math-1.5b-qwen_math", 1, "Qwen2.5-Math-1.5B / Qwen template", "Qwen/Qwen2.5-Math-1.5B",
             "qwen_math", _scores(20.0, 32.5, 33.0, 12.5, 22.8), 24.2),
    PaperRow("t1-qwen2.5-math-1.5b-no", 1, "Qwen2.5-Math-1.5B / No template", "Qwen/Qwen2.5-Math-1.5B", "no",
             _scores(16.7, 43.4, 61.8, 15.1, 28.4), 33.1),
    PaperRow("t1-qwen2.5-math-7b-4shot", 1, "Qwen2.5-Math-7B / (4-shot prompting)", "Qwen/Qwen2.5-Math-7B",
             "4-shot", _scores(3.3, 22.5, 61.6, 10.7, 20.9), 23.8, sizes={"amc": 40}, note=_FOUR_SHOT),
    PaperRow("t1-qwen2.5-math-7b-r1", 1, "Qwen2.5-Math-7B / R1 template", "Qwen/Qwen2.5-Math-7B", "r1",
             _scores(0.0, 0.0, 0.0, 0.0, 0.1), 0.0),
    PaperRow("t1-qwen2.5-math-7b-qwen_math", 1, "Qwen2.5-Math-7B / Qwen template", "Qwen/Qwen2.5-Math-7B",
             "qwen_math", _scores(16.7, 38.6, 50.6, 9.9, 16.6), 26.5),
    PaperRow("t1-qwen2.5-math-7b-no", 1, "Qwen2.5-Math-7B / No template", "Qwen/Qwen2.5-Math-7B", "no",
             _scores(0.2, 45.8, 69.0, 21.3, 34.7), 38.2, doubtful={"aime": _QWEN7B_NO_AIME}),
    # ---- Table 4: "Base model + Method" (the rows this toolkit's recipes reach) ----
    PaperRow("t4-qwen2.5-math-1.5b", 4, "Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-1.5B", "qwen_math",
             _scores(20.0, 32.5, 33.0, 12.5, 22.8), 24.2, note=_QWEN_TEMPLATE_T4),
    PaperRow("t4-qwen2.5-math-1.5b-no", 4, "Qwen2.5-Math-1.5B*", "Qwen/Qwen2.5-Math-1.5B", "no",
             _scores(16.7, 43.4, 61.8, 15.1, 28.4), 33.1, note=_NO_TEMPLATE_T4),
    PaperRow("oat-zero-1.5b", 4, "Oat-Zero-1.5B", "sail/Qwen2.5-Math-1.5B-Oat-Zero", "qwen_math",
             _scores(20.0, 53.0, 74.2, 25.7, 37.6), 42.1, trained=True, base_model="Qwen/Qwen2.5-Math-1.5B",
             note=_OAT_RECIPE + " This toolkit's 1.5B Qwen-Math recipe trains on MATH 12k, as the paper's "
             "examples/qwen2.5-math-1.5b.sh does."),
    PaperRow("t4-llama-3.2-3b", 4, "Llama-3.2-3B", "meta-llama/Llama-3.2-3B", "r1",
             _scores(0.0, 2.4, 6.4, 6.3, 1.3), 3.3, note=_LLAMA_TEMPLATE),
    PaperRow("t4-llama-3.2-3b-drgrpo", 4, "Llama-3.2-3B / + RL w. Dr. GRPO", None, "r1",
             _scores(3.3, 7.2, 10.0, 11.0, 2.2), 6.8, trained=True, base_model="meta-llama/Llama-3.2-3B",
             note=_LLAMA_TEMPLATE),
    PaperRow("t4-llama-3.2-3b-numinaqa", 4, "Llama-3.2-3B-NuminaQA", "lkevinzc/Llama-3.2-3B-NuminaQA", "r1",
             _scores(0.0, 0.0, 0.6, 0.0, 0.1), 0.14, average_digits=2, note=_LLAMA_TEMPLATE),
    PaperRow("oat-zero-3b", 4, "Llama-3.2-3B-NuminaQA / + RL w. Dr. GRPO (Oat-Zero-3B)", "sail/Llama-3.2-3B-Oat-Zero",
             "r1", _scores(6.7, 18.1, 50.0, 14.3, 14.7), 20.7, trained=True,
             base_model="lkevinzc/Llama-3.2-3B-NuminaQA", note=_LLAMA_TEMPLATE),
    PaperRow("t4-qwen2.5-math-7b", 4, "Qwen2.5-Math-7B", "Qwen/Qwen2.5-Math-7B", "qwen_math",
             _scores(16.7, 38.6, 50.6, 9.9, 16.6), 26.5, note=_QWEN_TEMPLATE_T4),
    PaperRow("t4-qwen2.5-math-7b-no", 4, "Qwen2.5-Math-7B*", "Qwen/Qwen2.5-Math-7B", "no",
             _scores(0.2, 45.8, 69.0, 21.3, 34.7), 38.2, doubtful={"aime": _QWEN7B_NO_AIME}, note=_NO_TEMPLATE_T4),
    PaperRow("oat-zero-7b", 4, "Oat-Zero-7B", "sail/Qwen2.5-Math-7B-Oat-Zero", "qwen_math",
             _scores(43.3, 62.7, 80.0, 30.1, 41.0), 51.4, trained=True, base_model="Qwen/Qwen2.5-Math-7B",
             note=_OAT_RECIPE),
)  # fmt: skip

ROWS_BY_KEY = {row.key: row for row in ROWS}


def model_key(name: str | None) -> str:
    """A model's comparable name: the last part of its Hub id or path, lower case (``Qwen2.5-Math-1.5B`` ->
    ``qwen2.5-math-1.5b``)."""
    return str(name or "").rstrip("/").split("/")[-1].lower()


def rows_for(model: str | None, template: str | None, tables: tuple[int, ...] = (1, 4)) -> list[PaperRow]:
    """The rows that evaluated ``model`` (by name) with ``template``, Table 1 first."""
    key = model_key(model)
    return [
        r
        for r in ROWS
        if r.table in tables and r.model and model_key(r.model) == key and r.template == template
    ]


def recipe_row(base_model: str | None, template: str | None) -> PaperRow | None:
    """The trained row a run from ``base_model`` with the training ``template`` is compared with (the 1.5B and
    7B Qwen-Math recipes: Oat-Zero-1.5B / -7B; Llama-3.2-3B-NuminaQA with r1: Oat-Zero-3B; Llama-3.2-3B with
    r1: its Dr. GRPO row), or None."""
    key = model_key(base_model)
    found = [r for r in ROWS if r.trained and model_key(r.base_model) == key and r.template == template]
    return found[0] if found else None
