"""Prompt templates of the paper (Section 3.1), by name.

A template turns a problem into the prompt string, knows how its answer is written
(``answer_format``) and owns where a response ends (:meth:`Template.endings`), for training,
evaluation, the in-training callback and the demo alike.

Endings policies (``ENDINGS``):

* ``"paper"`` (default), as the paper's code (train_zero_math.py ``ZeroMathActor.init`` and
  evaluate_model.py): ``r1`` stops after ``</answer>`` (kept in the response); ``qwen_math`` and ``no``
  set no stop string and no extra stop token, so a base model runs to its own end-of-sequence token or
  the budget. A Qwen-Math response that runs on past ``<|im_end|>`` is graded on its whole text.
* ``"chat_end"``: additionally, the chat template's end-of-turn marker (``<|im_end|>`` for
  ``qwen_math``) ends the response like an end-of-sequence token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AnswerFormat = Literal["boxed", "r1"]

ENDINGS = ("paper", "chat_end")
DEFAULT_ENDINGS = "paper"

R1 = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with the answer. "
    "The reasoning process is enclosed within <think> </think> and answer is enclosed within <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.\nUser: {question}\nAssistant: <think>"
)
QWEN_MATH = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
NO_TEMPLATE = "{question}"


@dataclass(frozen=True)
class Template:
    """A prompt template.

    Attributes:
        name: Registry name.
        prompt: Format string with one ``{question}`` field (literal braces doubled).
        answer_format: ``"boxed"`` (last ``\\boxed{}`` of the response) or ``"r1"``
            (``</think> <answer> ... </answer>``).
        stop: Strings that end a response under every policy; they are kept in the response.
        end_tokens: Special tokens that end the assistant's turn (chat markers); they end a response
            only under the ``"chat_end"`` policy.
    """

    name: str
    prompt: str
    answer_format: AnswerFormat = "boxed"
    stop: tuple[str, ...] = field(default_factory=tuple)
    end_tokens: tuple[str, ...] = field(default_factory=tuple)

    def format(self, question: str) -> str:
        """Return the prompt for ``question``."""
        return self.prompt.format(question=question)

    def endings(self, policy: str = DEFAULT_ENDINGS) -> Endings:
        """Where a response to this template ends under ``policy`` (see ``ENDINGS``)."""
        policy = check_endings(policy)
        tokens = self.end_tokens if policy == "chat_end" else ()
        return Endings(policy, tuple(self.stop), tuple(tokens))


@dataclass(frozen=True)
class Endings:
    """Where a response ends: after a stop string (kept in the text), or at a stop token (a special token,
    like end-of-sequence, that can only end generation as a token id). The model's own end-of-sequence
    token always ends a response too."""

    policy: str
    stop_strings: tuple[str, ...] = ()
    stop_tokens: tuple[str, ...] = ()

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings then stop tokens, as one list for backends that tell them apart themselves."""
        return self.stop_strings + self.stop_tokens

    def eos_tokens(self, vocab: dict[str, int] | Any) -> list[str]:
        """The stop tokens that are single tokens of ``vocab`` (a tokenizer's ``get_vocab()``)."""
        return [t for t in self.stop_tokens if t in vocab]


def check_endings(policy: str) -> str:
    """``policy`` if it names an endings policy, else one clear error."""
    if policy not in ENDINGS:
        raise ValueError(f"unknown endings policy {policy!r}; choose one of {', '.join(ENDINGS)}")
    return policy


_REGISTRY: dict[str, Template] = {}
_ALIASES = {"none": "no", "no_template": "no", "qwen-math": "qwen_math", "qwen": "qwen_math"}


def register_template(template: Template, *, overwrite: bool = False) -> Template:
    """Add ``template`` to the registry under ``template.name`` and return it."""
    if template.answer_format not in ("boxed", "r1"):
        raise ValueError(f"answer_format must be 'boxed' or 'r1', got {template.answer_format!r}")
    if "{question}" not in template.prompt:
        raise ValueError(f"template {template.name!r} has no '{{question}}' field in its prompt")
    if template.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"template {template.name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[template.name] = template
    return template


def get_template(name: str | Template) -> Template:
    """Look a template up by name (``r1``, ``qwen_math``, ``no`` or a registered one)."""
    if isinstance(name, Template):
        return name
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip())
    if key not in _REGISTRY:
        raise ValueError(f"unknown template {name!r}; known templates: {', '.join(available_templates())}")
    return _REGISTRY[key]


def available_templates() -> list[str]:
    """Names of the registered templates."""
    return sorted(_REGISTRY)


register_template(Template("r1", R1, answer_format="r1", stop=("</answer>",)))
register_template(Template("qwen_math", QWEN_MATH, answer_format="boxed", end_tokens=("<|im_end|>",)))
register_template(Template("no", NO_TEMPLATE, answer_format="boxed"))
