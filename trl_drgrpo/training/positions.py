"""Which position ids a model gives a left-padded batch by default, found with a check forward; and whether its
rotary frequencies depend on the sequence length (then cutting right padding changes them).

``gradient_tokens_only`` cuts all-padding columns off a micro-batch; the kept tokens must keep the positions of
TRL's untrimmed forward. Two default rules are exact to reproduce: ``arange`` over the columns (Llama, Qwen,
Mistral, GPT-2, ...: pass ``arange`` from the number of left columns cut) and ``cumsum`` of the attention mask
(OPT: unchanged by cutting all-padding columns, so the model's own default is kept).
"""

from __future__ import annotations

from typing import Literal

import torch

PositionRule = Literal["arange", "mask", "ignored"]


def position_rule(model: torch.nn.Module, vocab_size: int, device: torch.device) -> PositionRule | None:
    """The model's default position rule, or None when it is neither (then no column may be cut).

    Forwards of a tiny left-padded batch, all of the same shape: without position ids (twice, for the run-to-run
    noise), with ``arange`` ids and with ``cumsum(mask) - 1`` ids. A rule matches when its logits at the real
    tokens equal the default's within that noise (0 on deterministic hardware). ``ignored``: ``arange`` matches
    but so do shifted ids (the model does not use the ids it is given, so a cut left column could still move
    positions it computes itself). Runs in eval mode (no dropout); every process must call it (a sharded model
    gathers its weights in the forward).
    """
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1]], device=device)
    ids = (torch.arange(mask.numel(), device=device).view_as(mask) * 7 + 3) % max(vocab_size, 1)
    real = mask.bool()
    arange = torch.arange(mask.size(1), device=device).unsqueeze(0).expand_as(mask)
    cumsum = (mask.cumsum(1) - 1).clamp(min=0)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():

            def logits(position_ids: torch.Tensor | None) -> torch.Tensor:
                kwargs = {} if position_ids is None else {"position_ids": position_ids}
                out = model(input_ids=ids, attention_mask=mask, **kwargs)
                return out.logits[real].float()

            default = logits(None)
            noise = (logits(None) - default).abs().max()

            def matches(positions: torch.Tensor) -> bool:
                try:
                    return bool((logits(positions) - default).abs().max() <= noise)
                except (
                    TypeError,
                    ValueError,
                    RuntimeError,
                    IndexError,
                ):  # e.g. 3-D (multimodal) position ids
                    return False

            if matches(arange):
                return "ignored" if matches(arange + 1) else "arange"
            return "mask" if matches(cumsum) else None
    finally:
        model.train(training)


def length_dependent_rope(model: torch.nn.Module) -> list[str]:
    """The rope types of `model` whose frequencies transformers picks from ``max(position_ids) + 1`` (the
    ``dynamic`` types, ``longrope``): cutting right padding lowers that maximum."""
    found = set()
    for module in model.modules():
        types = getattr(module, "rope_type", None)
        for rope_type in types.values() if isinstance(types, dict) else [types]:
            if isinstance(rope_type, str) and ("dynamic" in rope_type or rope_type == "longrope"):
                found.add(rope_type)
    return sorted(found)
