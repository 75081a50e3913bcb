"""The training script's command line: a parser that shows the project's options first, YAML quirks fixed,
every inherited TRL script flag either honoured or refused, and per-process logging.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Any

from trl import GRPOConfig, ModelConfig, TrlParser

from ..config import DrGRPOConfig, DrGRPOScriptArguments

DESCRIPTION = (
    "Train with Dr. GRPO (Understanding R1-Zero-Like Training, arXiv 2503.20783). "
    "--config FILE reads a recipe YAML of flat `option: value` keys from any group below; flags given on the "
    "command line override it. The project's own options come first, then TRL's and transformers'."
)
USAGE = (
    "trl-drgrpo train --config RECIPE.yaml [--option value ...]\n"
    "       accelerate launch [--config_file ACCELERATE.yaml] recipes/train.py --config RECIPE.yaml [...]"
)

# TRL's ScriptArguments help, restated for what this script does with them.
HELP = {
    "dataset_config": "Configuration name of a Hub dataset (load_dataset's `name`).",
    "dataset_streaming": "Refused: the prompts are built in memory (kept for TRL compatibility).",
    "ignore_bias_buffers": "Keep boolean buffers (causal masks) out of DDP's buffer broadcast "
    "(fixes DDP errors with such buffers, huggingface/transformers#22482).",
}


def _own_fields(cls: type) -> list[str]:
    """Fields declared in `cls` itself (not inherited)."""
    declared = cls.__dict__.get("__annotations__", {})
    return [f.name for f in dataclasses.fields(cls) if f.name in declared]


def option_groups() -> list[tuple[str, str, list[str]]]:
    """(title, description, dataclass field names) of the groups shown before TRL's other options."""
    base_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    config_own = _own_fields(DrGRPOConfig)
    return [
        (
            "Dr. GRPO run (trl_drgrpo)",
            "Data, prompt template, math reward and in-training evaluation.",
            [f.name for f in dataclasses.fields(DrGRPOScriptArguments)],
        ),
        (
            "Dr. GRPO objective and batch shape (DrGRPOConfig)",
            "The paper's 2x2 ablation switches (length / std normalization), the constant normalizer, truncation "
            "reward, response endings and the global batch shape.",
            [name for name in config_own if name not in base_fields],
        ),
        (
            "The paper's recipe (TRL options with the paper's defaults)",
            "GRPOConfig options whose default DrGRPOConfig sets to the paper's value.",
            [name for name in config_own if name in base_fields],
        ),
        (
            "Model (TRL ModelConfig)",
            "Model loading, LoRA and quantization.",
            [f.name for f in dataclasses.fields(ModelConfig)],
        ),
    ]


def group_options(parser: argparse.ArgumentParser, groups: Sequence[tuple[str, str, list[str]]]) -> None:
    """Move the options of each group's fields out of the flat option list into titled groups, shown first."""
    optionals = parser._optionals
    placed: set[str] = set()
    new_groups = []
    for title, description, names in groups:
        group = parser.add_argument_group(title, description)
        wanted = set(names) - placed
        placed |= wanted
        moving = [a for a in optionals._group_actions if a.dest in wanted]
        optionals._group_actions[:] = [a for a in optionals._group_actions if a.dest not in wanted]
        group._group_actions.extend(moving)
        new_groups.append(group)
    rest = parser.add_argument_group(
        "Other TRL GRPOConfig / transformers TrainingArguments options",
        "Everything else the trainer accepts (see TRL's GRPOConfig documentation).",
    )
    help_actions = [a for a in optionals._group_actions if isinstance(a, argparse._HelpAction)]
    rest._group_actions.extend(a for a in optionals._group_actions if a not in help_actions)
    optionals._group_actions[:] = help_actions
    others = [g for g in parser._action_groups if g not in (*new_groups, rest)]
    parser._action_groups[:] = [*others, *new_groups, rest]


def make_parser() -> TrlParser:
    """The parser of ``recipes/train.py`` / ``trl-drgrpo train``."""
    parser = TrlParser(
        (DrGRPOScriptArguments, DrGRPOConfig, ModelConfig), description=DESCRIPTION, usage=USAGE
    )
    group_options(parser, option_groups())
    for action in parser._actions:
        if action.dest in HELP:
            action.help = HELP[action.dest]
    return parser


def normalize_yaml_values(script_args: DrGRPOScriptArguments) -> None:
    """YAML 1.1 reads ``template: no`` as ``False``: take it as the template named ``no``."""
    for name in ("template", "eval_template"):
        if getattr(script_args, name) is False:
            setattr(script_args, name, "no")


def check_script_options(
    script_args: DrGRPOScriptArguments, training_args: DrGRPOConfig, model_args: ModelConfig
) -> None:
    """Refuse TRL script flags this training script cannot honour, and inconsistent evaluation settings."""
    if script_args.dataset_streaming:
        raise ValueError(
            "dataset_streaming is not supported: the prompts are built in memory (the recipes' datasets hold a "
            "few thousand questions); drop --dataset_streaming"
        )
    evaluating = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"
    if script_args.dataset_test_split and not evaluating:
        raise ValueError(
            f"dataset_test_split={script_args.dataset_test_split!r} is only used with an eval_strategy "
            "(e.g. --eval_strategy steps --eval_steps 16); set one or drop dataset_test_split"
        )
    if evaluating and not script_args.dataset_test_split:
        raise ValueError(
            f"eval_strategy={training_args.eval_strategy!r} needs dataset_test_split (the split to evaluate on); "
            "for the paper's benchmarks use eval_benchmarks instead"
        )
    if model_args.load_in_4bit or model_args.load_in_8bit:
        check_quantization(model_args)


def check_quantization(model_args: ModelConfig) -> None:
    """4/8-bit loading needs bitsandbytes, a CUDA GPU and LoRA (quantized weights are not trained)."""
    import torch

    flag = "--load_in_4bit" if model_args.load_in_4bit else "--load_in_8bit"
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f'{flag} needs bitsandbytes: pip install "trl_drgrpo[quantization]"')
    if not torch.cuda.is_available():
        raise ValueError(f"{flag} needs a CUDA GPU (bitsandbytes quantization); drop it on this machine")
    if not model_args.use_peft:
        raise ValueError(f"{flag} trains LoRA adapters on frozen quantized weights: add --use_peft")


def quantization_kwargs(model_args: ModelConfig) -> dict[str, Any]:
    """``quantization_config`` for the trainer when 4/8-bit loading is asked (after :func:`check_quantization`)."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return {}
    from trl import get_quantization_config

    return {"quantization_config": get_quantization_config(model_args)}


def ignore_bool_buffers(model: Any) -> list[str]:
    """``--ignore_bias_buffers``: keep boolean buffers (causal masks) out of DDP's broadcast, as TRL's scripts do.

    Works around DDP errors with such buffers (huggingface/transformers#22482); returns the buffer names.
    """
    import torch

    names = [name for name, buffer in model.named_buffers() if buffer.dtype == torch.bool]
    model._ddp_params_and_buffers_to_ignore = names
    return names


def is_main_process() -> bool:
    """Rank 0 of the launch (true when not launched by accelerate/torchrun)."""
    return os.environ.get("RANK", "0") == "0"


def configure_logging() -> None:
    """INFO logs from the main process only; the other processes log warnings and errors."""
    level = logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("trl_drgrpo").setLevel(level)


def parse_training_args(
    argv: Sequence[str] | None = None,
) -> tuple[DrGRPOScriptArguments, DrGRPOConfig, ModelConfig]:
    """Parse a training command line (and its ``--config`` YAML) into the three argument objects."""
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        args=None if argv is None else list(argv)
    )
    normalize_yaml_values(script_args)
    return script_args, training_args, model_args
