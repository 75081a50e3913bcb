"""Slips at a controlled rate for the bias lab (``lab_train --slip_rate R``; ``lab --slip_rate R``).

RL removes the base model's own slips within about 30 steps, so the end window of a lab run holds few wrong
answers. With a slip rate ``R`` the task injects them: in each training rollout a fixed share ``R`` of the
responses (drawn from the run's seed and the step, so independent of load) get their boxed answer forced to
gold + 1 the moment they open ``\\boxed{`` (the digits are forced; the closing brace is the policy's). Everything before it, and the decision after it (stop or
continue), is sampled from the policy, so P(continue | slip) stays the policy's own. The forced tokens are
trained on as if sampled (negative advantage: the slip is pushed down, but it is forced again next time).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence

import torch

BOX_OPEN = "\\boxed{"


def slip_plan(rows: int, rate: float, seed: int, step: int) -> list[bool]:
    """Which of ``rows`` responses get a slip at ``step``: independent draws with probability ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"slip_rate must be in [0, 1], got {rate}")
    gen = torch.Generator().manual_seed(1_000_003 * int(seed) + int(step))
    return (torch.rand(rows, generator=gen) < rate).tolist()


def slip_text(gold: object) -> str | None:
    """The injected answer (``"57"`` for gold 56; the policy closes the box), None for a non-integer gold."""
    try:
        return str(int(str(gold).strip()) + 1)
    except ValueError:
        return None


class SlipInjector:
    """A ``LogitsProcessor``: in row ``i`` with ``targets[i]`` (token ids), once the generated text ends with
    ``\\boxed{``, force those tokens one per step; each row is forced at most once."""

    def __init__(self, tokenizer, targets: Sequence[Sequence[int] | None]):
        self.tokenizer = tokenizer
        self.targets = [list(t) if t else None for t in targets]
        self.position: list[int | None] = [None] * len(self.targets)
        self.prompt_length: int | None = None
        self.forced = [False] * len(self.targets)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.size(1)
        for row, target in enumerate(self.targets):
            if target is None:
                continue
            k = self.position[row]
            if k is None:
                tail = self.tokenizer.decode(
                    input_ids[row, self.prompt_length :][-8:], skip_special_tokens=True
                )
                if not tail.endswith(BOX_OPEN):
                    continue
                k = 0
            if k >= len(target):
                self.targets[row] = None  # done: what follows is the policy's
                continue
            scores[row] = torch.full_like(scores[row], -torch.inf)
            scores[row, target[k]] = 0.0
            self.position[row], self.forced[row] = k + 1, True
        return scores


@contextlib.contextmanager
def injecting(model: torch.nn.Module, processor: SlipInjector) -> Iterator[None]:
    """``model.generate`` runs with ``processor`` for the duration (TRL's generation call is left as it is)."""
    from transformers import LogitsProcessorList

    model.generate = functools.partial(model.generate, logits_processor=LogitsProcessorList([processor]))
    try:
        yield
    finally:
        del model.generate  # back to the class's method
