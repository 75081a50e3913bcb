"""Evaluate a model on the paper's five benchmarks, or merge several result summaries.

Usage:
    python recipes/evaluate.py --model Qwen/Qwen2.5-Math-1.5B --template qwen_math \
        --benchmarks aime,amc,math,minerva,olympiad_bench --backend vllm --output_dir results/qwen_math
    python recipes/evaluate.py --config my_eval.yaml [--field value ...]
    python recipes/evaluate.py --merge results/r1/summary.json results/qwen_math/summary.json \
        results/no/summary.json --output results/table1.md

``trl-drgrpo evaluate`` runs the same. ``summary.json`` records what ran: library versions, the model's revision,
the benchmark data's fingerprints, the grader and its settings, and a standard error per benchmark.

Like ``train``, this entry point sits above the subpackages: ``--merge`` uses the analysis toolkit's Table 1,
which the ``evaluation`` subpackage itself never imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trl import TrlParser

from .assets import check_offline, evaluation_assets, local_path_missing
from .evaluation.report import atomic_write_text
from .evaluation.run import EvaluationArguments, evaluate

DTYPES = ("auto", "bfloat16", "float16", "float32")
USAGE = (
    "trl-drgrpo evaluate --model ID_OR_FOLDER --output_dir DIR [--template qwen_math] [--benchmarks ...] [...]\n"
    "       trl-drgrpo evaluate --config EVAL.yaml [--field value ...]\n"
    "       trl-drgrpo evaluate --merge A/summary.json B/summary.json [--output table.md]"
)


def main(argv: list[str] | None = None) -> dict | str:
    """Parse arguments, then evaluate (returns the summary) or merge (returns the table)."""
    parser = TrlParser((EvaluationArguments,), usage=USAGE, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_and_config(args=argv)
    if args.template is False:  # YAML reads `template: no` as False
        args.template = "no"
    if args.dtype is not None and args.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {args.dtype!r}; choose one of {', '.join(DTYPES)}")
    if args.dtype == "auto":
        args.dtype = None  # the checkpoint's own dtype, recorded as such
    if args.merge:
        # the Table 1 layout lives in the analysis toolkit (`trl-drgrpo analyze templates`)
        from .analysis.templates_table import merge_table

        table = merge_table(args.merge)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.output, table)
        print(table, end="")
        return table
    missing = [name for name in ("model", "output_dir") if getattr(args, name) is None]
    if missing:
        parser.error(f"missing required argument(s): {', '.join('--' + m for m in missing)}")
    if not local_path_missing(args.model, args.data):
        assets = evaluation_assets(args.model, args.benchmarks, args.data, args.revision)
        check_offline(assets, "trl-drgrpo evaluate")
    summary = evaluate(**args.to_kwargs())
    print((Path(args.output_dir) / "results.md").read_text(), end="")
    return summary


if __name__ == "__main__":
    from .cli import run

    sys.exit(run("evaluate", sys.argv[1:]))
