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
