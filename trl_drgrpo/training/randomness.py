"""Whether a model's training forward draws random numbers (dropout, layer drop), found with check forwards; and
a block that runs a forward without moving the global random generators.

TRL shuffles each generation batch and samples completions from the global generators, so a forward that draws
from them changes every later batch order. ``gradient_tokens_only`` runs forwards of other shapes than TRL's
(cut micro-batches), leaves one out (deferred old log-probs) or adds some (old log-probs recomputed): each is
exact only if the model draws nothing in its training forward, or draws the same numbers whatever the shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

#: ``none``: no draws. ``same``: draws, and a micro-batch cut to fewer rows and columns gets the outputs of the
#: whole one at its kept tokens (e.g. one draw per layer for layer drop). ``shape``: draws that depend on the
#: batch's shape (dropout masks): a cut micro-batch is trained with other random numbers than TRL's.
RandomDraws = Literal["none", "same", "shape"]


def _generator_states(device: torch.device) -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    module = getattr(torch, device.type, None) if device.type != "cpu" else None
    if module is not None and hasattr(module, "get_rng_state"):
        states.append(module.get_rng_state(device))
    return states


@contextlib.contextmanager
def generators_kept(device: torch.device) -> Iterator[None]:
    """Within the block, draws from the global generators (CPU and `device`'s) are undone when it ends."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
        return
    index = (
        device.index if device.index is not None else torch.get_device_module(device.type).current_device()
    )
    with torch.random.fork_rng(devices=[index], device_type=device.type):
        yield


def training_draws(model: torch.nn.Module, vocab_size: int, device: torch.device) -> RandomDraws:
    """How `model`'s training-mode forward uses the global generators (no gradient; the generators are left as
    they were). Every process must call it (a sharded model gathers its weights in the forward).

    The whole batch has two right-padded rows; the cut one keeps the second row's real tokens only (so each kept
    token sits elsewhere in memory, as in a cut micro-batch). Each forward starts from the same generator state;
    ``same`` needs the cut forward's logits at the kept tokens to equal the whole forward's within the run-to-run
    difference of two whole forwards.
    """
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]], device=device)
    ids = (torch.arange(mask.numel(), device=device).view_as(mask) * 5 + 1) % max(vocab_size, 1)
    kept = int(mask[1].sum())
    start = _generator_states(device)

    def forward(rows: slice, cols: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with generators_kept(device):
            out = model(input_ids=ids[rows, :cols], attention_mask=mask[rows, :cols])
            return out.logits[-1, :kept].float(), _generator_states(device)

    training = model.training
    model.train()
    try:
        with torch.no_grad():
            whole, after = forward(slice(0, 2), mask.size(1))
            again, _ = forward(slice(0, 2), mask.size(1))
            cut, _ = forward(slice(1, 2), kept)
    finally:
        model.train(training)
    if all(torch.equal(a, b) for a, b in zip(after, start, strict=True)):
        return "none"
    noise = (again - whole).abs().max()
    return "same" if bool((cut - whole).abs().max() <= noise) else "shape"
