"""A deterministic rollout for the multi-process tests: the completion of global row r at step s is a
function of (s, r) only, so any number of ranks produces the same global batch as one process."""

from __future__ import annotations

import random
import re


def fixed_rollout(prompts: list[str], trainer) -> dict:
    tok = trainer.processing_class
    budget = trainer.max_completion_length
    step = trainer.state.global_step
    offset = trainer.accelerator.process_index * len(prompts)
    prompt_ids, completion_ids = [], []
    for i, prompt in enumerate(prompts):
        rng = random.Random(f"{step}-{offset + i}")
        a, b = (int(x) for x in re.findall(r"\d+", prompt)[-2:])
        answer = a + b if rng.random() < 0.5 else a + b + 1
        filler = " ".join(str(rng.randint(0, 99)) for _ in range(rng.randint(0, 5)))
        ids = tok(f"{filler} \\boxed{{{answer}}}")["input_ids"][: budget - 1] + [tok.eos_token_id]
        prompt_ids.append(tok(prompt)["input_ids"])
        completion_ids.append(ids)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def flat_rank_rollout(prompts: list[str], trainer) -> dict:
    """`fixed_rollout`, except that every global row from 4 on is answered right: with groups of 4 and 8 rows per
    rank, rank 0 holds one group with a reward spread and one without, rank 1 only groups without (advantage 0)."""
    rollout = fixed_rollout(prompts, trainer)
    tok = trainer.processing_class
    offset = trainer.accelerator.process_index * len(prompts)
    for i, prompt in enumerate(prompts):
        if offset + i >= 4:
            a, b = (int(x) for x in re.findall(r"\d+", prompt)[-2:])
            rollout["completion_ids"][i] = tok(f"{i % 3} \\boxed{{{a + b}}}")["input_ids"] + [
                tok.eos_token_id
            ]
    return rollout
