"""Train a model with Dr. GRPO (or one of the paper's ablations) on a math dataset.

    accelerate launch [--config_file accelerate_configs/<x>.yaml] recipes/train.py \
        --config recipes/<model>/<experiment>.yaml [--any_field value ...]

The YAML holds flat keys of `DrGRPOScriptArguments`, `DrGRPOConfig` and TRL's `ModelConfig`. A run resumes from
the last checkpoint in `output_dir` when there is one.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

import torch.distributed as dist
from transformers import AutoTokenizer
from trl import ModelConfig, TrlParser, get_peft_config

from .config import DrGRPOConfig, DrGRPOScriptArguments
from .data import check_model_source, load_problems, to_prompt_dataset
from .rewards import build_reward
from .templates import Template, get_template
from .trainer import DrGRPOTrainer
from .training import arguments
from .training.checkpointing import (
    choose_checkpoint,
    exit_if_stopped,
    install_sigterm_handler,
    stopped_by_signal_message,
)
from .training.outputs import finish_run, finish_trackers
from .training.precision import apply_master_weights
from .training.preflight import check_trackers

logger = logging.getLogger("trl_drgrpo.train")


def build_callbacks(script_args: DrGRPOScriptArguments, training_args: DrGRPOConfig) -> list:
    """The in-training evaluation callback, when `eval_benchmarks` is set."""
    if not script_args.eval_benchmarks:
        return []
    from .evaluation.callback import EvaluationCallback, interval_from_args

    return [
        EvaluationCallback(
            benchmarks=script_args.eval_benchmarks,
            every_n_steps=interval_from_args(
                training_args, script_args.eval_every_rollouts, script_args.eval_every_steps
            ),
            eval_at_start=script_args.eval_at_start,
            endings=training_args.endings,
            template=script_args.eval_template or script_args.template,
            limit=script_args.eval_limit,
            data=script_args.eval_data,
            max_tokens=script_args.eval_max_tokens or training_args.max_completion_length,
            output_dir=training_args.output_dir,
            reward=script_args.reward,
            answer_format=script_args.answer_format,
        )
    ]


def import_object(path: str):
    """Import `package.module.name` (the current directory is importable, as for TRL's scripts)."""
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{path!r} is not an import path of the form module.function")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), name)


def apply_template_endings(training_args: DrGRPOConfig, template: Template, vocab: dict[str, int]) -> None:
    """Where a response ends: the template's endings under `training_args.endings`, unless the config sets
    stop_strings / extra_eos_tokens itself (see trl_drgrpo.templates)."""
    endings = template.endings(training_args.endings)
    if training_args.stop_strings is None:
        training_args.stop_strings = list(endings.stop_strings) or None
    if training_args.extra_eos_tokens is None:
        training_args.extra_eos_tokens = endings.eos_tokens(vocab) or None


def last_checkpoint(output_dir: str, requested: str | None = None) -> str | None:
    """`requested` (checked), else the newest complete `checkpoint-N` in `output_dir` (skipped ones are logged)."""
    return choose_checkpoint(output_dir, requested)


def main(script_args: DrGRPOScriptArguments, training_args: DrGRPOConfig, model_args: ModelConfig) -> None:
    if not script_args.dataset_name:
        raise ValueError("dataset_name is required: a Hub dataset id, a save_to_disk folder or a data file")
    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required: a Hub model id or a local folder")
    arguments.normalize_yaml_values(script_args)
    check_trackers(training_args.report_to)
    arguments.check_script_options(script_args, training_args, model_args)
    template = get_template(script_args.template)  # fails early, listing the known templates

    init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    training_args.model_init_kwargs = apply_master_weights(
        {**init_kwargs, **(training_args.model_init_kwargs or {})},
        training_args,
        peft=model_args.use_peft,
        master_weights=script_args.master_weights,
    )

    check_model_source(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    apply_template_endings(training_args, template, tokenizer.get_vocab())

    problems = load_problems(
        script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
    )
    dataset = to_prompt_dataset(
        problems,
        template,
        script_args.problem_column,
        script_args.answer_column,
        script_args.max_train_samples,
    )
    eval_dataset = None
    if script_args.dataset_test_split:
        test_problems = load_problems(
            script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split
        )
        eval_dataset = to_prompt_dataset(
            test_problems, template, script_args.problem_column, script_args.answer_column
        )
    reward = build_reward(
        script_args.reward,
        template=template,
        answer_format=script_args.answer_format,
        answer_column=script_args.answer_column,
        timeout_s=script_args.reward_timeout_s,
        num_workers=script_args.reward_num_workers,
    )
    trainer = DrGRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=reward,
        args=training_args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=build_callbacks(script_args, training_args),
        rollout_func=import_object(script_args.rollout_func) if script_args.rollout_func else None,
        **arguments.quantization_kwargs(model_args),
    )
    trainer.model_card_dataset = script_args.dataset_name
    if script_args.ignore_bias_buffers:
        arguments.ignore_bool_buffers(trainer.model)
    checkpoint = last_checkpoint(training_args.output_dir, training_args.resume_from_checkpoint)
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    install_sigterm_handler(trainer)  # SIGTERM: finish the optimizer step, save a checkpoint, exit 143
    together = False  # whether every rank leaves here at the same point: finished, or stopped by SIGTERM
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        together = stopped_by_signal_message(trainer) is not None  # the ranks agreed on the stop step
        exit_if_stopped(trainer)
        finish_run(trainer, result, script_args.dataset_name)
        together = True
    finally:
        reward.close()
        # After an error on this rank the others are inside some collective: a barrier here would wait for them
        # until the ddp_timeout (30 min) and keep the error unprinted. cli() prints it and ends this process.
        if together and dist.is_available() and dist.is_initialized():
            # A barrier before tear-down avoids a rank aborting at exit while another still writes.
            dist.barrier()
            dist.destroy_process_group()


def make_parser() -> TrlParser:
    return arguments.make_parser()


def cli(argv: list[str] | None = None) -> None:
    """Command-line entry point (``recipes/train.py``, ``trl-drgrpo train``)."""
    arguments.configure_logging()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        main(*arguments.parse_training_args(argv))
        return
    try:
        main(*arguments.parse_training_args(argv))
    except SystemExit as stop:  # e.g. the SIGTERM checkpoint-and-stop path
        code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
        _exit_now(code)
    except BaseException:
        # Print the error now and leave: the launcher (torch elastic) then stops the other ranks, which may be
        # waiting for this one in a collective.
        print(f"Training failed on rank {os.environ.get('RANK', '?')}:", file=sys.stderr)
        traceback.print_exc()
        _exit_now(1)
    _exit_now(0)


def _exit_now(code: int) -> None:
    """Leave a multi-process run without running C++ static destructors.

    Everything is saved and the process group is destroyed by then, but a gloo/DeepSpeed worker thread still
    alive at interpreter exit makes a rank abort now and then ("terminate called without an active exception",
    SIGABRT), failing a run that finished. Flushing and ``os._exit`` skips that teardown, and the ``atexit``
    hooks with it, so the trackers' runs are finished here first.
    """
    sys.stderr.flush()
    finish_trackers(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
