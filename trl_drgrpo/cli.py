"""``trl-drgrpo``: one command-line entry point over the package.

    trl-drgrpo train --config recipes/<model>/<experiment>.yaml [--field value ...]
    trl-drgrpo train --num_processes 8 --accelerate_config accelerate_configs/zero2.yaml --config ...
    trl-drgrpo evaluate --model <id or folder> --template qwen_math --output_dir results/x
    trl-drgrpo download --config recipes/<model>/<experiment>.yaml    (or --model ID: what evaluate needs)
    trl-drgrpo analyze ...    trl-drgrpo demo ...    trl-drgrpo tiny OUTPUT_DIR

A user error (unknown benchmark, missing data folder, bad YAML key, tracker not installed, ...) prints one line
and exits with status 1; set ``TRL_DRGRPO_TRACEBACK=1`` to see the traceback instead. Importing this module is
cheap: each subcommand's module is loaded only when it runs.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

PROG = "trl-drgrpo"
# Exceptions that report a mistake in the command, the config or the inputs, not a bug: shown as one line.
# OSError covers missing files and models that are neither a local folder nor a Hub id.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


class Command(NamedTuple):
    module: str
    function: str
    summary: str


COMMANDS: dict[str, Command] = {
    "train": Command(
        "trl_drgrpo.train",
        "cli",
        "train with Dr. GRPO from a recipe (same as `accelerate launch recipes/train.py`)",
    ),
    "evaluate": Command(
        "trl_drgrpo.evaluate",
        "main",
        "evaluate a model on the paper's benchmarks, or merge result summaries",
    ),
    "analyze": Command("trl_drgrpo.analysis.cli", "main", "the paper's analyses of models and runs"),
    "download": Command(
        "trl_drgrpo.download",
        "main",
        "fetch what a recipe or an evaluation loads from the Hub (offline nodes)",
    ),
    "demo": Command(
        "trl_drgrpo.demo.run", "main", "the end-to-end CPU demo (pretrain, eval, RL, eval, plot)"
    ),
    "tiny": Command("trl_drgrpo.demo.tiny", "main", "write a tiny random model and tokenizer for tests"),
}

# `train` options consumed here to start the processes through accelerate (not passed to the training script).
LAUNCH_OPTIONS = ("num_processes", "accelerate_config")


def usage() -> str:
    lines = [
        f"usage: {PROG} <command> [options]   ({PROG} <command> --help for a command's options)",
        "",
        "Dr. GRPO (Understanding R1-Zero-Like Training, arXiv 2503.20783) on top of TRL.",
        "",
        "commands:",
        *(f"  {name:<10} {command.summary}" for name, command in COMMANDS.items()),
        "",
        "train also takes --num_processes N and --accelerate_config FILE: it then starts N processes with",
        "`accelerate launch` (or run `accelerate launch recipes/train.py ...` yourself).",
        "Errors in the command or config print one line; TRL_DRGRPO_TRACEBACK=1 shows the traceback.",
    ]
    return "\n".join(lines)


def one_line(error: BaseException) -> str:
    """The error's message on one line."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def load_command(name: str) -> Callable[[list[str]], Any]:
    """The function behind subcommand ``name`` (a clear error if its module is not part of this install)."""
    command = COMMANDS[name]
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as error:
        if error.name and command.module.startswith(error.name):
            raise ValueError(
                f"`{name}` is not available in this version ({command.module} is missing)"
            ) from None
        raise
    return getattr(module, command.function)


def split_launch_options(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Pull ``--num_processes N`` / ``--accelerate_config FILE`` (also ``--x=v``) out of a train command line."""
    found: dict[str, str] = {}
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in LAUNCH_OPTIONS:
            if "=" in arg:
                found[name] = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                found[name] = args[i + 1]
                i += 1
            else:
                raise ValueError(f"--{name} needs a value")
        else:
            rest.append(arg)
        i += 1
    if "num_processes" in found and not found["num_processes"].isdigit():
        raise ValueError(f"--num_processes must be a positive integer, got {found['num_processes']!r}")
    return found, rest


def launch_command(launch: dict[str, str], train_argv: Sequence[str]) -> list[str]:
    """The ``accelerate launch`` command that runs ``trl-drgrpo train`` in every process."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if "accelerate_config" in launch:
        if not os.path.isfile(launch["accelerate_config"]):
            raise ValueError(f"accelerate config {launch['accelerate_config']} does not exist")
        cmd += ["--config_file", launch["accelerate_config"]]
    if "num_processes" in launch:
        cmd += ["--num_processes", launch["num_processes"]]
    return [*cmd, "--module", "trl_drgrpo.cli", "train", *train_argv]


def check_before_launch(argv: Sequence[str]) -> None:
    """Checks made once, before ``accelerate launch`` starts the processes (whose errors would each come with the
    launcher's own report): option names in the recipe and on the command line, and the template.

    Nothing is instantiated, so no accelerator is touched in this parent process.
    """
    from .templates import get_template
    from .training.arguments import make_parser
    from .training.preflight import option_values, read_config

    parser = make_parser()
    known = {action.dest for action in parser._actions}
    config_path = option_values(argv, "config")
    config = read_config(config_path[0]) if config_path else {}
    unknown = sorted(set(config) - known - {"env"})
    if unknown:
        raise ValueError(f"unknown option(s) in {config_path[0]}: {', '.join(unknown)}")
    args = list(argv)
    if "--config" in args:
        index = args.index("--config")
        del args[index : index + 2]
    _, extra = parser.parse_known_args(args)
    if extra:
        raise ValueError(f"unrecognized arguments: {' '.join(extra)}")
    template = option_values(argv, "template")
    name = template[0] if template else config.get("template", "qwen_math")
    get_template("no" if name is False else name)


def train(argv: list[str]) -> int:
    """``train``: fast checks, then the run in this process or under ``accelerate launch``."""
    if "-h" in argv or "--help" in argv:
        load_command("train")(argv)
        return 0
    from .training.preflight import preflight_train

    launch, rest = split_launch_options(argv)
    preflight_train(rest)
    if launch:
        check_before_launch(rest)
        return subprocess.call(launch_command(launch, rest))
    load_command("train")(rest)
    return 0


def run(name: str, argv: list[str]) -> int:
    """Run subcommand ``name``; a user error becomes one line on stderr and exit status 1."""
    try:
        if name == "train":
            return train(argv)
        if name == "evaluate":
            from .training.preflight import preflight_evaluate

            preflight_evaluate(argv)
        result = load_command(name)(argv)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except USER_ERRORS as error:
        if os.environ.get("TRL_DRGRPO_TRACEBACK"):
            raise
        print(f"{PROG} {name}: error: {one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {name}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__

        print(f"trl_drgrpo {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"{PROG}: error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
