"""The model card of a Dr. GRPO run: TRL's card citing the paper (arXiv 2503.20783), naming the dataset, plus
a section with the run's Dr. GRPO setup and, when the run evaluated itself (``eval/step_<N>``), its last
evaluation beside the paper's matching row (``trl_drgrpo.analysis.paper``).

``DrGRPOTrainer`` points TRL's card machinery at :data:`PAPER` and calls :func:`write_model_card`.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAPER_ID = "2503.20783"
PAPER = {
    "title": "Understanding R1-Zero-Like Training: A Critical Perspective",
    "id": PAPER_ID,
    "citation": textwrap.dedent(
        """\
        @article{liu2025understanding,
            title        = {{Understanding R1-Zero-Like Training: A Critical Perspective}},
            author       = {Zichen Liu and Changyu Chen and Wenjun Li and Penghui Qi and Tianyu Pang and Chao Du and Wee Sun Lee and Min Lin},
            year         = 2025,
            eprint       = {arXiv:2503.20783},
            archivePrefix = {arXiv},
        }"""
    ),
}
SECTION_TITLE = "## Dr. GRPO setup"

logger = logging.getLogger(__name__)


def hub_dataset_id(name: str | None) -> str | None:
    """``name`` when it reads as a Hub dataset id (``owner/name``), ``None`` for local folders and files."""
    if not name or os.path.exists(os.path.expanduser(name)) or name.startswith((".", "/", "~")):
        return None
    return name if name.count("/") == 1 else None


def setup_section(args: Any, dataset_name: str | None, truncation: str | None = None) -> str:
    """Markdown describing the objective and data of the run (from a ``DrGRPOConfig``); ``truncation`` is the
    trainer's resolved rule for responses cut at the budget."""

    def value(name: str, default: Any = None) -> Any:
        return getattr(args, name, default)

    length, std = value("length_normalization", False), value("std_normalization", False)
    variant = {
        (False, False): "Dr. GRPO",
        (True, True): "GRPO (length and std normalization)",
        (True, False): "length normalization only",
        (False, True): "std normalization only",
    }[(bool(length), bool(std))]
    lines = [
        SECTION_TITLE,
        "",
        f"Trained with trl_drgrpo's DrGRPOTrainer ({variant}), the method of "
        f"*{PAPER['title']}* (arXiv {PAPER_ID}): advantage r_i - mean(r)"
        + (" / std(r)" if std else "")
        + ", token losses "
        + ("averaged per response" if length else f"summed and divided by {value('loss_normalizer')}")
        + ".",
        "",
        f"- Dataset: {dataset_name or 'not recorded'}",
        f"- length_normalization: {length}, std_normalization: {std}, beta (KL): {value('beta')}",
        f"- num_generations: {value('num_generations')}, max_completion_length: "
        f"{value('max_completion_length')}, temperature: {value('temperature')}",
        f"- learning_rate: {value('learning_rate')}, "
        + (truncation or f"truncated_completion_reward: {value('truncated_completion_reward')!r}"),
    ]
    return "\n".join(lines) + "\n"


def paper_section(output_dir: str | os.PathLike) -> str | None:
    """The run's last in-training evaluation beside the paper's row, or None (no evaluation, or a failure: the
    card is written without it rather than failing the end of a run)."""
    try:
        from ..analysis.paper import card_section

        return card_section(output_dir)
    except Exception as error:  # noqa: BLE001
        logger.warning("model card: no comparison with the paper (%s: %s)", type(error).__name__, error)
        return None


def write_model_card(
    trainer: Any,
    create_card: Callable[..., None],
    model_name: str | None = None,
    dataset_name: str | None = None,
    tags: str | list[str] | None = None,
) -> None:
    """Write ``README.md`` in ``output_dir`` with TRL's ``create_card`` (which cites :data:`PAPER`), then add
    the Dr. GRPO section. ``dataset_name`` defaults to the trainer's ``model_card_dataset`` attribute."""
    dataset_name = dataset_name or getattr(trainer, "model_card_dataset", None)
    create_card(model_name=model_name, dataset_name=hub_dataset_id(dataset_name), tags=tags)
    if not trainer.is_world_process_zero():
        return
    path = Path(trainer.args.output_dir) / "README.md"
    if not path.is_file():
        return
    text = path.read_text()
    # TRL's template links a base model and a Hub id that may not exist (local model, no push): name them plainly.
    config = getattr(trainer.model, "config", None)
    base = str(getattr(config, "_name_or_path", "") or "a local model")
    text = text.replace("[None](https://huggingface.co/None)", f"`{base}`")
    text = text.replace('model="None"', f'model="{trainer.args.output_dir}"')
    section = setup_section(trainer.args, dataset_name, getattr(trainer, "truncation_rule", None))
    comparison = paper_section(trainer.args.output_dir)
    if comparison:
        section += "\n" + comparison
    marker = "\n### Framework versions"
    if marker in text:
        head, tail = text.split(marker, 1)
        text = head.rstrip() + "\n\n" + section + marker + tail
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
