"""Evaluate a model on the paper's five benchmarks, or merge several result summaries.

Usage:
    python recipes/evaluate.py --model Qwen/Qwen2.5-Math-1.5B --template qwen_math \
        --benchmarks aime,amc,math,minerva,olympiad_bench --backend vllm --output_dir results/qwen_math
    python recipes/evaluate.py --config my_eval.yaml [--field value ...]
    python recipes/evaluate.py --merge results/r1/summary.json results/qwen_math/summary.json \
        results/no/summary.json --output results/table1.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from trl import TrlParser

from .report import atomic_write_text
from .run import EvaluationArguments, evaluate


def main(argv: list[str] | None = None) -> dict | str:
    """Parse arguments, then evaluate (returns the summary) or merge (returns the table)."""
    parser = TrlParser((EvaluationArguments,))
    (args,) = parser.parse_args_and_config(args=argv)
    if args.merge:
        # the Table 1 layout lives in the analysis toolkit (`trl-drgrpo analyze templates`)
        from ..analysis.templates_table import merge_table

        table = merge_table(args.merge)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.output, table)
        print(table, end="")
        return table
    missing = [name for name in ("model", "output_dir") if getattr(args, name) is None]
    if missing:
        parser.error(f"missing required argument(s): {', '.join('--' + m for m in missing)}")
    summary = evaluate(**args.to_kwargs())
    print((Path(args.output_dir) / "results.md").read_text(), end="")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
