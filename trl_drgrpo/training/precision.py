"""fp32 master weights: the dtype the training script loads the policy in.

The paper trains with DeepSpeed in bf16 (oat: ``--bf16``, ``--zero-stage 2``; weights loaded in bf16), and
DeepSpeed's bf16 mode keeps an fp32 copy of the weights and the AdamW states in the optimizer. Without
DeepSpeed (DDP, one GPU, CPU) nothing keeps such a copy: weights loaded in bf16 are updated in bf16, and at
the paper's lr of 1e-6 almost every update rounds away (a weight of 0.02 has a bf16 spacing of 1.2e-4). There
the policy is loaded in fp32 and, with ``bf16: true``, computed in bf16 autocast (mixed precision).

``master_weights`` (a training-script argument) chooses:

* ``"fp32"`` (default): fp32 master weights wherever training runs, as the paper's setup has them;
* ``"model_dtype"``: load the policy in the recipe's ``dtype`` whatever the launch (pure bf16 training
  without DeepSpeed; the pre-fix behaviour, kept as an explicit option).
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

MASTER_WEIGHTS = ("fp32", "model_dtype")
_HALF = {"bfloat16", "bf16", "float16", "fp16", "half"}


def uses_deepspeed(training_args: Any) -> bool:
    """Whether this run trains under DeepSpeed (an accelerate DeepSpeed launch or ``--deepspeed``)."""
    if getattr(training_args, "deepspeed_plugin", None) is not None or getattr(
        training_args, "deepspeed", None
    ):
        return True
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true")


def deepspeed_keeps_master_weights(training_args: Any) -> bool:
    """DeepSpeed keeps fp32 master weights (and optimizer states) in its bf16 and fp16 modes."""
    half = bool(getattr(training_args, "bf16", False) or getattr(training_args, "fp16", False))
    return uses_deepspeed(training_args) and half


def load_dtype(
    requested: str | None,
    *,
    deepspeed_master: bool,
    peft: bool = False,
    master_weights: str = "fp32",
) -> str | None:
    """The dtype to load the trainable policy in.

    Args:
        requested: The recipe's ``dtype`` (``None``/``"auto"`` follow the checkpoint, bf16 for Qwen and Llama).
        deepspeed_master: DeepSpeed keeps fp32 master weights (:func:`deepspeed_keeps_master_weights`).
        peft: Only adapters train; PEFT keeps them in fp32 by itself (``autocast_adapter_dtype``).
        master_weights: ``"fp32"`` or ``"model_dtype"`` (see the module docstring).
    """
    if master_weights not in MASTER_WEIGHTS:
        raise ValueError(f"master_weights must be one of {', '.join(MASTER_WEIGHTS)}, got {master_weights!r}")
    if master_weights == "model_dtype" or deepspeed_master or peft:
        return requested
    if requested is None or str(requested).lower() in _HALF | {"auto"}:
        return "float32"
    return requested


def apply_master_weights(
    init_kwargs: dict[str, Any], training_args: Any, *, peft: bool, master_weights: str = "fp32"
) -> dict[str, Any]:
    """``init_kwargs`` (the policy's ``from_pretrained`` arguments) with the dtype :func:`load_dtype` picks."""
    requested = init_kwargs.get("dtype")
    keeps = deepspeed_keeps_master_weights(training_args)
    dtype = load_dtype(requested, deepspeed_master=keeps, peft=peft, master_weights=master_weights)
    if dtype != requested:
        compute = "bf16 autocast" if getattr(training_args, "bf16", False) else "fp32"
        logger.info(
            "Loading the policy in %s (fp32 master weights; compute: %s) instead of dtype=%s: without DeepSpeed "
            "nothing else keeps an fp32 copy. Pass --master_weights model_dtype to load it in %s.",
            dtype,
            compute,
            requested,
            requested,
        )
    return {**init_kwargs, "dtype": dtype}
