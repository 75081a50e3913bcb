"""Issue 11, items 1 and 6 (evaluation side): where a response ends, owned by the template.

The paper (train_zero_math.py ``ZeroMathActor.init``, evaluate_model.py) sets no stop string and no extra stop
token for the qwen_math and no templates, in training and evaluation; r1 stops after ``</answer>``.
"""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_drgrpo.config import DrGRPOConfig
from trl_drgrpo.evaluation import evaluate
from trl_drgrpo.evaluation.backends import Generation, TransformersBackend, effective_stops
from trl_drgrpo.templates import DEFAULT_ENDINGS, ENDINGS, get_template
from trl_drgrpo.train import apply_template_endings

# (template, policy) -> (stop strings, stop tokens)
EXPECTED = {
    ("r1", "paper"): (("</answer>",), ()),
    ("qwen_math", "paper"): ((), ()),
    ("no", "paper"): ((), ()),
    ("r1", "chat_end"): (("</answer>",), ()),
    ("qwen_math", "chat_end"): ((), ("<|im_end|>",)),
    ("no", "chat_end"): ((), ()),
}


def test_the_paper_policy_is_the_default():
    assert DEFAULT_ENDINGS == "paper" and set(ENDINGS) == {"paper", "chat_end"}
    assert get_template("qwen_math").endings() == get_template("qwen_math").endings("paper")


@pytest.mark.parametrize(("template", "policy"), sorted(EXPECTED))
def test_template_endings(template, policy):
    endings = get_template(template).endings(policy)
    assert (endings.stop_strings, endings.stop_tokens) == EXPECTED[template, policy]
    assert endings.policy == policy


def test_unknown_policy_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown endings policy 'im_end'; choose one of paper, chat_end"):
        get_template("qwen_math").endings("im_end")
    with pytest.raises(ValueError, match="unknown endings policy"):
        DrGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, endings="im_end")


@pytest.mark.parametrize(("template", "policy"), sorted(EXPECTED))
def test_training_takes_the_template_endings(tmp_path, template, policy):
    args = DrGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, endings=policy)
    assert args.to_dict()["endings"] == policy  # recorded in the run config (training arguments, trackers)
    apply_template_endings(args, get_template(template), {"<|im_end|>": 7})
    strings, tokens = EXPECTED[template, policy]
    assert args.stop_strings == (list(strings) or None)
    assert args.extra_eos_tokens == (list(tokens) or None)


def test_training_default_for_qwen_math_adds_no_stop(tmp_path):
    args = DrGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    apply_template_endings(args, get_template("qwen_math"), {"<|im_end|>": 7})
    assert args.endings == "paper" and args.stop_strings is None and args.extra_eos_tokens is None


@pytest.mark.parametrize(("template", "policy"), sorted(EXPECTED))
def test_evaluation_takes_the_template_endings(template, policy):
    strings, tokens = EXPECTED[template, policy]
    assert effective_stops(get_template(template), endings=policy) == strings + tokens
    assert effective_stops(get_template(template), ["\n\nUser:"], policy) == (*strings, *tokens, "\n\nUser:")


class _Recorder:
    def __init__(self):
        self.stops = []

    def generate(self, prompts, n, temperature, top_p, max_tokens, stop, seed):
        self.stops.append(tuple(stop))
        return [[Generation("\\boxed{2}", 3, True)] * n for _ in prompts]


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite"
    DatasetDict({"amc": Dataset.from_dict({"problem": ["1+1?"], "answer": ["2"]})}).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("policy", ENDINGS)
def test_evaluate_states_the_choice_in_summary(tmp_path, suite, policy):
    backend = _Recorder()
    summary = evaluate("m", "qwen_math", "amc", backend, tmp_path / policy, data=suite, endings=policy)
    stops = ("<|im_end|>",) if policy == "chat_end" else ()
    assert backend.stops == [stops]
    saved = json.loads((tmp_path / policy / "summary.json").read_text())
    for config in (summary["config"], saved["config"]):
        assert config["endings"] == policy and config["stop"] == list(stops)


# ---- the transformers backend on token ids (tiny byte-level tokenizer with <|im_end|> as a special token) ----


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = TransformersBackend(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, show_progress=False
    )
    return backend, tok


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_paper_endings_grade_text_past_im_end(tiny):
    """With no stop on <|im_end|>, a response that runs on past it keeps all its text (the marker itself, a
    special token, is dropped from the decoded text, as vLLM does)."""
    backend, tok = tiny
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = _ids(tok, "x = 1") + [im_end] + _ids(tok, " so \\boxed{2}")
    eos = {tok.eos_token_id}
    gen = backend._to_generation(ids, eos, ())  # the paper: only the model's EOS ends the response
    assert gen.text.endswith("\\boxed{2}") and "x = 1" in gen.text
    assert gen.num_tokens == len(ids) and not gen.finished  # ran to the budget: truncated
    chat = backend._to_generation(ids, eos | {im_end}, ())  # chat_end: <|im_end|> ends it
    assert chat.text == "x = 1" and chat.finished


def test_finished_exactly_at_the_budget_is_finished(tiny):
    """Item 6, evaluation side: EOS or a stop string on the budget's last token counts as finished."""
    backend, tok = tiny
    body = _ids(tok, "<answer> 2 ")
    eos = {tok.eos_token_id}
    at_edge = body + [tok.eos_token_id]  # budget = len(at_edge): EOS is the last generated token
    gen = backend._to_generation(at_edge, eos, ())
    assert gen.finished and gen.num_tokens == len(at_edge)
    stopped = _ids(tok, "<answer> 2 </answer>")  # the stop string ends on the budget's last token
    gen = backend._to_generation(stopped, eos, ("</answer>",))
    assert gen.finished and gen.text.endswith("</answer>")
    cut = _ids(tok, "<answer> 2 </answ")  # the budget ran out inside the stop string
    assert not backend._to_generation(cut, eos, ("</answer>",)).finished
