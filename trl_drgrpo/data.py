"""Loading question/answer datasets and turning them into TRL prompt datasets with a template."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from .templates import Template, get_template

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def check_model_source(name: str) -> None:
    """Fail with one line when ``name`` is neither an existing model folder nor shaped like a Hub model id.

    (Left to transformers, a missing folder is reported as an invalid Hub repo id across many lines.)
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise ValueError(f"model {name!r} is a file; give the folder that holds config.json and the weights")
    looks_local = name.startswith((".", "/", "~"))
    try:
        validate_repo_id(name)
    except HFValidationError:
        looks_local = True
    if looks_local:
        raise FileNotFoundError(f"model folder {name!r} does not exist (and it is not a Hub model id)")


def load_problems(name: str, config: str | None = None, split: str = "train") -> Dataset:
    """Load one split from a Hub dataset id, a ``save_to_disk`` folder or a .json/.jsonl/.parquet/.csv file."""
    path = Path(name).expanduser()
    if path.is_dir():
        try:
            data = load_from_disk(str(path))
        except (IndexError, StopIteration):  # what `datasets` raises for a saved dataset without rows
            raise ValueError(f"the dataset in {path} has no rows (or its files are damaged)") from None
        if isinstance(data, DatasetDict):
            if split not in data:
                raise ValueError(f"split {split!r} not in {path}; splits there: {', '.join(data)}")
            return data[split]
        return data
    if path.suffix.lower() in _FILE_BUILDERS:
        if not path.is_file():
            raise FileNotFoundError(f"dataset file {path} does not exist")
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        if not head.strip() and len(head) < 1 << 20:
            raise ValueError(f"the dataset file {path} is empty")
        try:
            return load_dataset(_FILE_BUILDERS[path.suffix.lower()], data_files=str(path), split="train")
        except StopIteration:  # e.g. a file of blank lines
            raise ValueError(f"the dataset file {path} has no rows") from None
    if path.exists() or name.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"{name!r} is not a dataset folder (save_to_disk) or a .json/.jsonl/.parquet/.csv file"
        )
    return load_dataset(name, config, split=split)


def to_prompt_dataset(
    dataset: Dataset,
    template: str | Template,
    problem_column: str = "problem",
    answer_column: str = "answer",
    max_samples: int | None = None,
) -> Dataset:
    """Add a ``prompt`` column (the template applied to ``problem_column``) and keep ``answer_column`` for the reward.

    Other columns are dropped, so the reward sees exactly the gold answer.
    """
    template = get_template(template)
    missing = [c for c in (problem_column, answer_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset has no column(s) {missing}; its columns are {dataset.column_names}. "
            "Set problem_column / answer_column to the right names."
        )
    if len(dataset) == 0:
        raise ValueError("the dataset has no rows; check dataset_name, dataset_config and the split")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(
                f"max_train_samples must be >= 1 (or unset to use every question), got {max_samples}"
            )
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    prompts = [template.format(str(q)) for q in dataset[problem_column]]
    keep = dataset.select_columns([answer_column])
    return keep.add_column("prompt", prompts)
