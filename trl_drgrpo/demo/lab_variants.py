"""Task variants of the bias lab (``python -m trl_drgrpo.demo.lab --variant NAME``).

``decision`` (the default, ``make bias-lab``) isolates the decision the length bias acts on. The demo's
task (single-digit ``+ - *``, facts the model knows), but each solution states the true result first and
boxes its answer after it (``7 * 8 = 56. \\boxed{57}.``; ``synthetic.varied_solution(result_first=True)``),
so a slip (30% of the corpus' solutions) is visible in the response and the model can know, at the
decision, that its answer is wrong. The base always boxes (``unboxed_rate=0``: format is not what RL
learns); a right answer always stops (``steps_rate=0``); after a slip it continues half of the time
(``ramble_rate=0.5``) with filler sentences that go on with probability 0.6 (continuations can double).
Why the answer must be visible: if the model cannot tell a wrong answer from a right one at the decision,
GRPO's push towards continuing after wrong answers and towards stopping after right ones fall on the same
logit and cancel exactly in expectation (the advantages of a group sum to 0). The recipe
``recipes/lab/bias_lab_decision.yaml`` holds the pre-registration.

``v1`` is the first lab (the demo's task and base model: single-digit ``+ - *``, mostly unboxed at the
start) and ``persistent`` its harder split (multiplication up to 15, longer rambles); see the history
paragraph of docs/bias-lab.md.
"""

from __future__ import annotations

from dataclasses import replace

PERSISTENT_TASK = {"max_operand": 9, "max_mul_operand": 15}
PERSISTENT_RECIPE = "recipes/lab/bias_lab_persistent.yaml"
DECISION_RECIPE = "recipes/lab/bias_lab_decision.yaml"
DECISION_PRETRAIN = {
    "result_first": True,
    "unboxed_rate": 0.0,
    "steps_rate": 0.0,
    "ramble_rate": 0.5,
    "ramble_continue": 0.6,
}
VARIANTS = ("decision", "v1", "persistent")
# (seeds of GRPO and Dr. GRPO, seeds of the two single-bias arms) when --seeds / --side_seeds are not given
DEFAULT_SEEDS = {
    "decision": ("0,1,2,3,4,5,6,7", "0,1"),
    "v1": ("0,1,2", "0,1,2"),
    "persistent": ("0,1,2", "0,1,2"),
}


def variant_settings(name: str):
    """``(pretrain settings, task kwargs, default recipe path relative to the repository)`` of a variant."""
    from .run import TASK, demo_pretrain_arguments

    if name == "v1":
        return demo_pretrain_arguments(), dict(TASK), "recipes/lab/bias_lab.yaml"
    if name == "persistent":
        settings = replace(demo_pretrain_arguments(), ramble_continue=0.6, **PERSISTENT_TASK)
        return settings, dict(PERSISTENT_TASK), PERSISTENT_RECIPE
    if name == "decision":
        settings = replace(demo_pretrain_arguments(), **DECISION_PRETRAIN)
        return settings, dict(TASK), DECISION_RECIPE
    raise ValueError(f"unknown lab variant {name!r}; choose from {', '.join(VARIANTS)}")
