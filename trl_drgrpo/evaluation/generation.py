"""What every generation backend shares: the ``Generation`` record, the sampling checks and special-token stops.

``backends`` (transformers, the choice of backend) and ``vllm_backend`` both build on this module, so neither
imports the other at load time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class Generation(NamedTuple):
    """One generated sample: its text (ending with the stop string if one ended it), its length in
    tokens and whether it ended by itself (EOS or stop string) rather than by the token budget."""

    text: str
    num_tokens: int
    finished: bool


def split_special_stops(tokenizer: Any, stop: Sequence[str]) -> tuple[list[int], list[str]]:
    """Split ``stop`` into token ids of single added/special tokens (e.g. ``<|im_end|>``) and plain strings.

    Special tokens are dropped from decoded text, so they can only end generation as token ids.
    """
    added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
    ids = [added[s] for s in stop if s in added]
    return ids, [s for s in stop if s and s not in added]


def check_sampling(n: int, temperature: float, top_p: float, max_tokens: int) -> None:
    """Raise ``ValueError`` on sampling settings no backend accepts."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
