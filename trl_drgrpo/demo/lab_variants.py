"""Task variants of the bias lab (``python -m trl_drgrpo.demo.lab --variant NAME``).

``default`` is the lab of ``make bias-lab``: the demo's task (single-digit ``+ - *``) and base model.
``persistent`` is a harder split where wrong answers persist: multiplication of operands up to 15
(multi-digit products, about 60% of the problems) mixed into the single-digit ``+ -``, and longer rambles
after a slip (each further filler sentence with probability 0.6 instead of 0.3). The same small model
cannot learn every product in the same pretraining budget, so the reward should plateau below 1 and
groups with both right and wrong responses keep existing, which is where GRPO's length term acts.
"""

from __future__ import annotations

from dataclasses import replace

PERSISTENT_TASK = {"max_operand": 9, "max_mul_operand": 15}
PERSISTENT_RECIPE = "recipes/lab/bias_lab_persistent.yaml"


def variant_settings(name: str):
    """``(pretrain settings, task kwargs, default recipe path relative to the repository)`` of a variant."""
    from .run import TASK, demo_pretrain_arguments

    if name == "default":
        return demo_pretrain_arguments(), dict(TASK), "recipes/lab/bias_lab.yaml"
    if name == "persistent":
        settings = replace(demo_pretrain_arguments(), ramble_continue=0.6, **PERSISTENT_TASK)
        return settings, dict(PERSISTENT_TASK), PERSISTENT_RECIPE
    raise ValueError(f"unknown lab variant {name!r}; choose from default, persistent")


VARIANTS = ("default", "persistent")
