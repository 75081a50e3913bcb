"""The small workload of the multi-process tests: addition problems on disk and a recipe YAML for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset, DatasetDict


def write_workload(root: Path, model_dir: str, **recipe: Any) -> Path:
    """Save 21 addition problems under ``root/data`` and ``root/recipe.yaml`` (shared keys + ``recipe``)."""
    pairs = [(a, b) for a in range(2, 9) for b in range(3, 6)]
    data = Dataset.from_dict(
        {"problem": [f"{a}+{b}=" for a, b in pairs], "answer": [str(a + b) for a, b in pairs]}
    )
    DatasetDict({"train": data}).save_to_disk(str(root / "data"))
    base = {
        "model_name_or_path": model_dir,
        "dataset_name": str(root / "data"),
        "template": "no",
        "rollout_func": "tests.distributed.rollouts.fixed_rollout",  # half right, half wrong: non-zero loss
        "num_generations": 8,
        "max_completion_length": 24,
        "use_cpu": True,
        "gradient_checkpointing": False,
        "report_to": "none",
        "reward_num_workers": 0,
        "seed": 0,
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump({**base, **recipe}))
    return root


def checkpointed_workload(root: Path, model_dir: str, steps: int, **recipe: Any) -> Path:
    """The workload trained for ``steps`` optimizer steps, two passes per rollout, saved at the end."""
    return write_workload(
        root,
        model_dir,
        num_iterations=2,  # the second pass's loss depends on the updated weights: gradient sync is checked too
        learning_rate=1e-2,
        max_steps=steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=steps,
        bf16=False,
        **recipe,
    )
