"""``trl-drgrpo analyze <command>`` / ``python -m trl_drgrpo.analysis <command>``.

Commands (each writes ``summary.json``, ``<command>.md`` and PNG plots into ``--output_dir``):
  reflection  self-reflection rate and accuracy with / without it (keywords or an LLM judge)
  answering   share of responses that answer in the template's format (Figure 3, left)
  passk       pass@k curves, k = 1..n, per benchmark
  dynamics    training curves of one or more runs, optionally grouped by arm (Figures 5, 7, 8)
  templates   Table 1: model × template (× step) by benchmark
  paper       did a run reproduce the paper? evaluations beside Tables 1 and 4, with noise and verdicts
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .io import AnalysisError

COMMANDS = ("reflection", "answering", "passk", "dynamics", "templates", "paper")


def _common(p: argparse.ArgumentParser, command: str, inputs: str = "+") -> None:
    if inputs:
        p.add_argument(
            "inputs",
            nargs=inputs,
            help="evaluation folders, samples JSONL files, or folders searched for evaluations"
            if command != "dynamics"
            else "training run folders (or trainer_state.json files)",
        )
    p.add_argument(
        "--output_dir", default=f"outputs/analysis/{command}", help="where results go (default: %(default)s)"
    )
    p.add_argument("--labels", nargs="+", default=None, help="display names, one per input")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-drgrpo analyze", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("reflection", help="self-reflection vs accuracy (Figure 15)")
    _common(p, "reflection")
    p.add_argument("--keywords", default=None, help="comma list replacing the paper's keyword list")
    p.add_argument("--extra_keywords", default=None, help="comma list added to the keyword list")
    p.add_argument(
        "--response_column", default="response", help="text column of the JSONL (default: response)"
    )
    p.add_argument("--score_column", default="score", help="grade column, > 0 is correct (default: score)")
    p.add_argument("--judge_url", default=None, help="OpenAI-compatible base URL: judge with an LLM instead")
    p.add_argument("--judge_model", default="default", help="model name sent to the judge")
    p.add_argument(
        "--judge_prompt_file", default=None, help="file holding the judge prompt ({response}, {question})"
    )
    p.add_argument(
        "--judge_cache", default=None, help="verdict cache (default: <output_dir>/judge_cache.jsonl)"
    )
    p.add_argument("--judge_api_key_env", default=None, help="environment variable holding the API key")
    p.add_argument("--judge_workers", type=int, default=4, help="concurrent judge requests")
    p.add_argument("--judge_timeout_s", type=float, default=60.0, help="seconds per judge request")

    p = sub.add_parser("answering", help="question-answering ability per template (Figure 3, left)")
    _common(p, "answering")
    p.add_argument("--template", default=None, help="template of inputs that do not name one (JSONL files)")
    p.add_argument(
        "--response_column", default="response", help="text column of the JSONL (default: response)"
    )

    p = sub.add_parser("passk", help="pass@k curves from evaluations with n > 1")
    _common(p, "passk")

    p = sub.add_parser("dynamics", help="training curves of runs, grouped by arm (Figures 5, 7, 8)")
    _common(p, "dynamics", inputs="*")
    p.add_argument(
        "--group",
        nargs="+",
        action="append",
        metavar=("ARM", "RUN"),
        default=None,
        help="an arm and its runs (seeds): --group grpo runs/grpo-s0 runs/grpo-s1; repeatable",
    )
    p.add_argument("--window", type=int, default=5, help="logged points averaged for start/end values")
    p.add_argument("--smooth", type=int, default=1, help="moving-average window of the curves (1: raw)")
    p.add_argument("--title", default=None, help="figure title")

    p = sub.add_parser("templates", help="Table 1: model × template by benchmark (replaces evaluate --merge)")
    _common(p, "templates")

    p = sub.add_parser("paper", help="evaluations beside the paper's Tables 1 and 4, with noise and verdicts")
    _common(p, "paper")
    p.add_argument(
        "--row",
        default=None,
        help="compare with this paper row (default: found by model, template, recipe); an unknown key lists them",
    )
    p.add_argument(
        "--recipe",
        default=None,
        help="the YAML recipe the evaluated model was trained with (for a trained model)",
    )
    p.add_argument("--table", type=int, choices=(1, 4), default=None, help="match rows of this table only")
    p.add_argument(
        "--step", type=int, default=None, help="the training step compared (default: the last evaluated)"
    )
    p.add_argument(
        "--confidence", type=float, default=0.95, help="level of the noise band (default: %(default)s)"
    )
    p.add_argument(
        "--skip_unmatched",
        action="store_true",
        help="leave out evaluations without a paper row (named in a line)",
    )
    return parser


def _split(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


def run_command(args: argparse.Namespace) -> dict:
    """Run the parsed command; return its summary."""
    progress = not args.no_progress
    if args.command == "reflection":
        from .judge import JudgeConfig, api_key_from_env
        from .reflection import DEFAULT_KEYWORDS, reflection

        keywords = _split(args.keywords) if args.keywords is not None else list(DEFAULT_KEYWORDS)
        keywords += [k for k in _split(args.extra_keywords) if k not in keywords]
        judge = None
        if args.judge_url:
            kwargs = {}
            if args.judge_prompt_file:
                path = Path(args.judge_prompt_file)
                if not path.is_file():
                    raise AnalysisError(f"judge prompt file not found: {path}")
                kwargs["prompt"] = path.read_text(encoding="utf-8")
            judge = JudgeConfig(
                url=args.judge_url,
                model=args.judge_model,
                cache_path=args.judge_cache or str(Path(args.output_dir) / "judge_cache.jsonl"),
                api_key=api_key_from_env(args.judge_api_key_env),
                workers=args.judge_workers,
                timeout_s=args.judge_timeout_s,
                **kwargs,
            )
        return reflection(
            args.inputs,
            args.output_dir,
            keywords=keywords,
            response_column=args.response_column,
            score_column=args.score_column,
            labels=args.labels,
            judge=judge,
            show_progress=progress,
        )
    if args.command == "answering":
        from .answering import answering

        return answering(
            args.inputs,
            args.output_dir,
            template=args.template,
            response_column=args.response_column,
            labels=args.labels,
            show_progress=progress,
        )
    if args.command == "passk":
        from .passk import passk

        return passk(args.inputs, args.output_dir, labels=args.labels, show_progress=progress)
    if args.command == "dynamics":
        from .dynamics import dynamics

        groups = None
        if args.group:
            groups = {}
            for arm, *members in args.group:
                if not members:
                    raise AnalysisError(f"--group {arm} names no run")
                groups.setdefault(arm, []).extend(members)
        return dynamics(
            args.inputs,
            args.output_dir,
            groups=groups,
            labels=args.labels,
            window=args.window,
            smooth=args.smooth,
            title=args.title,
            show_progress=progress,
        )
    if args.command == "paper":
        from .paper import paper

        return paper(
            args.inputs,
            args.output_dir,
            row=args.row,
            recipe=args.recipe,
            table=args.table,
            step=args.step,
            confidence=args.confidence,
            labels=args.labels,
            skip_unmatched=args.skip_unmatched,
            show_progress=progress,
        )
    from .templates_table import templates

    return templates(args.inputs, args.output_dir, labels=args.labels, show_progress=progress)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, print its table; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed by argparse
        return int(exit_.code or 0)
    try:
        summary = run_command(args)
    except AnalysisError as err:
        print(f"trl-drgrpo analyze {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:  # unreadable files, unknown template names...
        print(f"trl-drgrpo analyze {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trl-drgrpo analyze {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # input shaped in a way no check foresaw: still one line, traceback on request
        if os.environ.get("TRL_DRGRPO_TRACEBACK"):
            raise
        print(
            f"trl-drgrpo analyze {args.command}: error: unexpected input ({type(err).__name__}: {err}); "
            "TRL_DRGRPO_TRACEBACK=1 shows where",
            file=sys.stderr,
        )
        return 1
    out = Path(args.output_dir)
    table = out / f"{args.command}.md"
    if table.is_file():
        print(table.read_text(encoding="utf-8"), end="")
    for plot in summary.get("plots", []):
        print(f"plot: {plot}")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
