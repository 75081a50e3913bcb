"""What a finished training run leaves in ``output_dir``, and on the Hub when asked.

``train_results.json`` / ``all_results.json`` (the run's final metrics), ``trainer_state.json`` (the log
history), the model, its tokenizer, and a model card (``README.md``) that cites the paper and names the dataset.
:func:`finish_trackers` closes the W&B / trackio runs of a process that leaves through ``os._exit``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


def finish_run(trainer: Any, train_result: Any, dataset_name: str | None) -> None:
    """Save metrics, state, model, tokenizer and model card; push to the Hub when ``push_to_hub`` is set."""
    args = trainer.args
    metrics = dict(getattr(train_result, "metrics", None) or {})
    metrics["train_samples"] = (
        len(trainer.train_dataset) if hasattr(trainer.train_dataset, "__len__") else None
    )
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    trainer.model_card_dataset = dataset_name
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(args.output_dir)
        trainer.create_model_card(model_name=model_name(args), dataset_name=dataset_name)
    if args.push_to_hub:
        logger.info("Pushing %s to the Hub (%s)", args.output_dir, args.hub_model_id or "default repository")
        trainer.push_to_hub(dataset_name=dataset_name)


def model_name(args: Any) -> str:
    """The card's model name: the Hub repository name, else the output folder's name."""
    from pathlib import Path

    if getattr(args, "hub_model_id", None):
        return str(args.hub_model_id).split("/")[-1]
    return Path(args.output_dir).name


def finish_trackers(exit_code: int) -> list[str]:
    """Finish the W&B and trackio runs this process holds; the names of those finished.

    A multi-process run leaves through ``os._exit`` (train.py), which skips the ``atexit`` hook W&B finishes
    its run with (transformers' callback never calls ``wandb.finish()``), so the run would show as crashed with
    its last records missing. A non-zero ``exit_code`` marks the W&B run failed. Trackers never imported are
    left alone; a tracker that fails to finish is logged, not raised (the run's own exit status matters more).
    """
    finished = []
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=exit_code)
            finished.append("wandb")
        except Exception as error:  # noqa: BLE001
            logger.warning("could not finish the W&B run: %s: %s", type(error).__name__, error)
    trackio = sys.modules.get("trackio")
    if trackio is not None and callable(getattr(trackio, "finish", None)):
        try:
            trackio.finish()  # raises when no run is open (transformers' callback finished it at train end)
            finished.append("trackio")
        except Exception as error:  # noqa: BLE001
            logger.debug("trackio.finish(): %s: %s", type(error).__name__, error)
    return finished
