"""The tiny offline model: tokenizer round trip, special tokens, determinism, Auto* loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from trl_drgrpo import available_templates, get_template
from trl_drgrpo.demo.tiny import build_tiny_model, main

TEXTS = [
    "What is 37 + 48?",
    "  leading and trailing spaces  ",
    "a  b   c\t\td\n\nnew\r\nlines\n",
    "\\boxed{\\frac{1}{2}} and $x^2 + y_1 = \\sqrt{3}$",
    "héllo wörld — 世界 🎉 ∑ π ≤ ∞",
    "<think> reasoning </think> <answer> 42 </answer>",
    "",
    " ",
    "1234567890 00000 -17.25",
]


@pytest.fixture(scope="module")
def auto_tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_auto_tokenizer_is_fast_with_special_tokens(auto_tokenizer):
    assert auto_tokenizer.is_fast
    assert auto_tokenizer.eos_token == "<|endoftext|>"
    assert auto_tokenizer.pad_token == "<|endoftext|>"
    assert len(auto_tokenizer) <= 1024


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_through_auto_tokenizer(auto_tokenizer, text):
    ids = auto_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert auto_tokenizer.decode(ids) == text


def test_round_trip_of_every_template(auto_tokenizer):
    for name in available_templates():
        prompt = get_template(name).format("What is 12 * 7?")
        ids = auto_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert auto_tokenizer.decode(ids) == prompt


def test_chat_markers_are_single_tokens(auto_tokenizer):
    for marker in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        ids = auto_tokenizer(f"x{marker}y", add_special_tokens=False)["input_ids"]
        marker_id = auto_tokenizer.convert_tokens_to_ids(marker)
        assert marker_id in ids and len(ids) == 3, (marker, ids)
    prompt = get_template("qwen_math").format("What is 2 + 3?")
    ids = auto_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids.count(auto_tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    assert ids.count(auto_tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2
    # skip_special_tokens strips the markers (the reward sees clean completions)
    assert auto_tokenizer.decode(ids, skip_special_tokens=True).startswith("system\n")


def test_auto_and_plain_fast_tokenizers_agree(tiny_model_dir, auto_tokenizer):
    plain = PreTrainedTokenizerFast.from_pretrained(tiny_model_dir)
    for text in TEXTS + [get_template("qwen_math").format("What is 9 - 4?")]:
        assert plain(text)["input_ids"] == auto_tokenizer(text)["input_ids"]


def test_tokenizer_config_names_fast_class(tiny_model_dir):
    config = json.loads((Path(tiny_model_dir) / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_model_loads_and_generates(tiny_model_dir, auto_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == len(auto_tokenizer)
    eos = auto_tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == eos and model.generation_config.pad_token_id == eos
    inputs = auto_tokenizer(["What is 1 + 1?", "Hi"], return_tensors="pt", padding=True)
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= inputs["input_ids"].shape[1] + 5


def test_weights_deterministic_given_seed(tmp_path, tiny_model_dir):
    again = load_file(Path(build_tiny_model(tmp_path / "again", seed=0)) / "model.safetensors")
    first = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert (Path(tiny_model_dir) / "tokenizer.json").read_text() == (
        tmp_path / "again" / "tokenizer.json"
    ).read_text()
    other = load_file(Path(build_tiny_model(tmp_path / "other", seed=1)) / "model.safetensors")
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_cli_sizes(tmp_path):
    main([str(tmp_path / "m"), "--hidden_size", "32", "--num_layers", "1", "--intermediate_size", "48"])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]) == (32, 1, 48)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 30}, "divisible by num_heads"),
        ({"num_kv_heads": 3}, "divisible by num_kv_heads"),
        ({"vocab_size": 10}, "vocab_size"),
    ],
)
def test_bad_sizes_raise_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model(tmp_path / "bad", **kwargs)
