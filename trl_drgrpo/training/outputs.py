"""What a finished training run leaves in ``output_dir``, and on the Hub when asked.

``train_results.json`` / ``all_results.json`` (the run's final metrics), ``trainer_state.json`` (the log
history), the model, its tokenizer, and a model card (``README.md``) that cites the paper and names the dataset.
"""

from __future__ import annotations

import logging
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
