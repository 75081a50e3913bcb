"""The training command line: every inherited flag works or is refused, grouped --help, YAML quirks, per-rank
logging, and what a finished run leaves (metrics, state, a model card citing arXiv 2503.20783)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict

from trl_drgrpo.training import arguments
from trl_drgrpo.training.model_card import PAPER, hub_dataset_id, setup_section, write_model_card
from trl_drgrpo.training.outputs import finish_run

REPO = Path(__file__).resolve().parents[1]


def _parse(tmp_path: Path, yaml_text: str, *extra: str):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml_text)
    return arguments.parse_training_args(
        ["--config", str(recipe), "--output_dir", str(tmp_path / "o"), *extra]
    )


def test_yaml_template_no_is_the_no_template(tmp_path):
    script_args, _, _ = _parse(tmp_path, "template: no\neval_template: no\nuse_cpu: true\n")
    assert script_args.template == "no" and script_args.eval_template == "no"
    script_args, _, _ = _parse(tmp_path, "template: r1\nuse_cpu: true\n")
    assert script_args.template == "r1" and script_args.eval_template is None


def test_dataset_streaming_is_refused(tmp_path):
    args = _parse(tmp_path, "use_cpu: true\n", "--dataset_streaming")
    with pytest.raises(ValueError, match="dataset_streaming is not supported"):
        arguments.check_script_options(*args)


def test_dataset_test_split_needs_an_eval_strategy_and_back(tmp_path):
    args = _parse(tmp_path, "use_cpu: true\n", "--dataset_test_split", "test")
    with pytest.raises(ValueError, match="dataset_test_split='test' is only used with an eval_strategy"):
        arguments.check_script_options(*args)
    args = _parse(tmp_path, "use_cpu: true\n", "--eval_strategy", "steps", "--eval_steps", "1")
    with pytest.raises(ValueError, match="needs dataset_test_split"):
        arguments.check_script_options(*args)
    args = _parse(tmp_path, "use_cpu: true\n", "--dataset_test_split", "test", "--eval_strategy", "steps")
    arguments.check_script_options(*args)  # consistent: accepted


def test_quantized_loading_states_what_it_needs(tmp_path, monkeypatch):
    import importlib.util

    args = _parse(tmp_path, "use_cpu: true\n", "--load_in_4bit")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a)
    )
    with pytest.raises(ValueError, match=r"--load_in_4bit needs bitsandbytes.*trl_drgrpo\[quantization\]"):
        arguments.check_script_options(*args)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "bitsandbytes" else real(n, *a)
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--load_in_4bit needs a CUDA GPU"):
        arguments.check_script_options(*args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="add --use_peft"):
        arguments.check_script_options(*args)
    args = _parse(tmp_path, "use_cpu: true\n", "--load_in_4bit", "--use_peft")
    arguments.check_script_options(*args)
    config = arguments.quantization_kwargs(args[2])["quantization_config"]
    assert config.load_in_4bit and not config.load_in_8bit
    assert arguments.quantization_kwargs(_parse(tmp_path, "use_cpu: true\n")[2]) == {}


def test_ignore_bias_buffers_keeps_bool_buffers_out_of_ddp():
    model = torch.nn.Linear(2, 2)
    model.register_buffer("causal_mask", torch.ones(2, 2, dtype=torch.bool))
    model.register_buffer("scale", torch.ones(2))
    assert arguments.ignore_bool_buffers(model) == ["causal_mask"]
    assert model._ddp_params_and_buffers_to_ignore == ["causal_mask"]


def test_help_shows_the_projects_options_first():
    text = arguments.make_parser().format_help()
    titles = [
        "Dr. GRPO run (trl_drgrpo):",
        "Dr. GRPO objective and batch shape (DrGRPOConfig):",
        "The paper's recipe (TRL options with the paper's defaults):",
        "Model (TRL ModelConfig):",
        "Other TRL GRPOConfig / transformers TrainingArguments options:",
    ]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions)
    assert "arXiv 2503.20783" in text.split(titles[0])[0]  # the description comes before the options
    own = text[positions[1] : positions[2]]
    assert "--length_normalization" in own and "--samples_per_step" in own
    assert "--gradient_accumulation_steps" in text[positions[4] :]
    assert "--template" in text[positions[0] : positions[1]]
    assert text.index("usage:") == 0 and len(text.split("\n\n")[0].splitlines()) <= 3  # short usage


@pytest.mark.parametrize(("rank", "level"), [("0", logging.INFO), ("1", logging.WARNING)])
def test_only_the_main_process_logs_info(monkeypatch, rank, level):
    monkeypatch.setenv("RANK", rank)
    logger = logging.getLogger("trl_drgrpo")
    before = logger.level
    try:
        arguments.configure_logging()
        assert logger.getEffectiveLevel() == level
    finally:
        logger.setLevel(before)


def test_card_section_and_dataset_naming():
    assert hub_dataset_id("hiyouga/math12k") == "hiyouga/math12k"
    assert hub_dataset_id("/data/math") is None and hub_dataset_id("./x") is None
    args = SimpleNamespace(
        length_normalization=False, std_normalization=False, loss_normalizer=3000.0, beta=0.0
    )
    section = setup_section(args, "hiyouga/math12k")
    assert "Dr. GRPO" in section and "divided by 3000.0" in section and "hiyouga/math12k" in section
    grpo = setup_section(SimpleNamespace(length_normalization=True, std_normalization=True), None)
    assert "GRPO (length and std normalization)" in grpo and "/ std(r)" in grpo
    assert "2503.20783" in PAPER["citation"] and PAPER["id"] == "2503.20783"


class _FakeTrainer:
    """Just what finish_run / write_model_card touch."""

    def __init__(self, output_dir: Path, push: bool):
        self.args = SimpleNamespace(output_dir=str(output_dir), push_to_hub=push, hub_model_id=None)
        self.train_dataset = [1, 2, 3]
        self.calls: list[tuple] = []
        self.processing_class = SimpleNamespace(save_pretrained=lambda d: self.calls.append(("tokenizer", d)))
        self.model = SimpleNamespace(config=SimpleNamespace(_name_or_path="/models/base"))

    def __getattr__(self, name):
        if name in (
            "log_metrics",
            "save_metrics",
            "save_state",
            "save_model",
            "push_to_hub",
            "create_model_card",
        ):
            return lambda *a, **k: self.calls.append((name, a, k))
        raise AttributeError(name)

    def is_world_process_zero(self):
        return True


@pytest.mark.parametrize("push", [False, True])
def test_finish_run_saves_metrics_state_and_pushes_when_asked(tmp_path, push):
    trainer = _FakeTrainer(tmp_path, push)
    finish_run(trainer, SimpleNamespace(metrics={"train_loss": 0.5}), "hiyouga/math12k")
    names = [c[0] for c in trainer.calls]
    assert names[:3] == ["log_metrics", "save_metrics", "save_state"]
    assert trainer.calls[1][1] == ("train", {"train_loss": 0.5, "train_samples": 3})
    assert "save_model" in names and "tokenizer" in names
    card = next(c for c in trainer.calls if c[0] == "create_model_card")
    assert card[2]["dataset_name"] == "hiyouga/math12k"
    assert ("push_to_hub" in names) is push
    if push:
        assert next(c for c in trainer.calls if c[0] == "push_to_hub")[2] == {
            "dataset_name": "hiyouga/math12k"
        }


def test_write_model_card_names_a_local_base_model(tmp_path):
    trainer = _FakeTrainer(tmp_path, False)
    trainer.args.length_normalization = trainer.args.std_normalization = False

    def trl_card(model_name, dataset_name, tags):
        assert dataset_name is None  # a local folder is no Hub dataset link
        (tmp_path / "README.md").write_text(
            "fine-tuned version of [None](https://huggingface.co/None).\n"
            'pipeline(model="None")\n\n### Framework versions\n\n- TRL\n'
        )

    write_model_card(trainer, trl_card, "run", str(tmp_path / "data"))
    text = (tmp_path / "README.md").read_text()
    assert "[None]" not in text and "`/models/base`" in text and f'model="{tmp_path}"' in text
    assert text.index("## Dr. GRPO setup") < text.index("### Framework versions")
    assert f"Dataset: {tmp_path / 'data'}" in text


@pytest.mark.slow
def test_run_with_eval_split_leaves_metrics_state_and_card(tiny_model_dir, tmp_path):
    """End to end: YAML `template: no`, a held-out split evaluated by the trainer, --ignore_bias_buffers."""
    rows = [(a, b) for a in range(1, 5) for b in range(1, 3)]
    problems = Dataset.from_dict(
        {"problem": [f"{a}+{b}=" for a, b in rows], "answer": [str(a + b) for a, b in rows]}
    )
    DatasetDict({"train": problems, "test": problems.select(range(4))}).save_to_disk(str(tmp_path / "data"))
    recipe = {
        "model_name_or_path": tiny_model_dir,
        "dataset_name": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 8,
        "max_steps": 2,
        "save_steps": 1,
        "save_total_limit": 1,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "reward_num_workers": 1,
    }
    text = yaml.safe_dump(recipe) + "template: no\n"  # unquoted: YAML reads it as False
    (tmp_path / "recipe.yaml").write_text(text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [sys.executable, "-m", "trl_drgrpo.cli", "train", "--config", str(tmp_path / "recipe.yaml")]
    cmd += ["--dataset_test_split", "test", "--eval_strategy", "steps", "--eval_steps", "2"]
    cmd += ["--per_device_eval_batch_size", "4", "--ignore_bias_buffers"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert json.loads((run / "train_results.json").read_text())["train_samples"] == 8
    assert (run / "all_results.json").is_file()
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    assert any("eval_reward" in h for h in history), "the test split was not evaluated"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]  # save_total_limit 1
    card = (run / "README.md").read_text()
    assert "2503.20783" in card and "Understanding R1-Zero-Like Training" in card
    assert "DeepSeekMath" not in card and "@article{liu2025understanding" in card
    assert f"Dataset: {tmp_path / 'data'}" in card
