"""Short pretraining of the tiny model on worked examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_drgrpo.demo.pretrain import PretrainArguments, main, pretrain, weights_digest

SMALL = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "num_kv_heads": 1,
    "intermediate_size": 64,
    "num_examples": 200,
    "batch_size": 8,
    "log_every": 0,
    "num_threads": 1,
}


def test_pretrain_lowers_loss_and_saves_loadable_model(tmp_path):
    out = pretrain(tmp_path / "base", PretrainArguments(steps=40, learning_rate=5e-3, **SMALL))
    log = json.loads((Path(out) / "pretrain_log.json").read_text())
    losses = log["losses"]
    assert len(losses) == 40 and log["args"]["steps"] == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    text = "What is 3 + 4? 3 + 4 = 7. The answer is \\boxed{7}."
    assert tokenizer.is_fast and tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert (
        json.loads((Path(out) / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )
    assert model.config.hidden_size == 32


def test_pretrain_deterministic(tmp_path):
    args = PretrainArguments(steps=3, **SMALL)
    first = json.loads((Path(pretrain(tmp_path / "a", args)) / "pretrain_log.json").read_text())["losses"]
    second = json.loads((Path(pretrain(tmp_path / "b", args)) / "pretrain_log.json").read_text())["losses"]
    assert first == second
    # the saved weights themselves, bit for bit; another seed gives other weights (the check can fail)
    assert weights_digest(tmp_path / "a") == weights_digest(tmp_path / "b")
    pretrain(tmp_path / "c", PretrainArguments(steps=3, **{**SMALL, "seed": 1}))
    assert weights_digest(tmp_path / "c") != weights_digest(tmp_path / "a")
    with pytest.raises(FileNotFoundError):
        weights_digest(tmp_path)


def test_pretrain_continues_from_init_dir(tmp_path, tiny_model_dir):
    out = pretrain(tmp_path / "cont", PretrainArguments(steps=2, **SMALL), init_dir=tiny_model_dir)
    assert (
        AutoModelForCausalLM.from_pretrained(out).config.hidden_size == 64
    )  # the fixture's size, not SMALL's


def test_pretrain_cli(tmp_path):
    flags = [f"--{k}={v}" for k, v in SMALL.items()]
    main([str(tmp_path / "cli"), "--steps", "2", *flags])
    assert json.loads((tmp_path / "cli" / "pretrain_log.json").read_text())["args"]["steps"] == 2


def test_pretrain_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="steps, batch_size and num_examples"):
        pretrain(tmp_path / "bad", PretrainArguments(steps=0))
