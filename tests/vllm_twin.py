"""A project-built model that vLLM's CPU build accepts, for the ``vllm`` tests.

vLLM's CPU attention takes head sizes 32, 64, 80, ... only, so the suite's tiny model (head size 16) is refused.
The twin is the tiny model at width 128 with 4 heads (head size 32), trained for a few seconds on R1-format
answers to the first problems of the local ``math`` suite, so that it writes ``</answer>`` (the R1 template's stop
string) and then keeps going: responses end at ``</answer>`` only if stop handling works.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

NUM_PROBLEMS = 8  # the first 8 math problems of at most MAX_PROBLEM_CHARS characters are trained on
MAX_PROBLEM_CHARS = 200
TAIL = " And that is all, there is nothing more to say."


def twin_completion(answer: str) -> str:
    """The response the twin learns: a short think, the boxed gold answer in ``<answer>`` tags, then a tail."""
    return f" Let me compute. </think> <answer> \\boxed{{{answer}}} </answer>{TAIL}"


def training_problems(suite: str | os.PathLike, count: int = NUM_PROBLEMS) -> list[tuple[str, str]]:
    """(index, problem, answer) of the first ``count`` short problems of the local ``math`` benchmark."""
    from trl_drgrpo.evaluation.benchmarks import load_benchmark

    data = load_benchmark("math", str(suite))
    short = [i for i in range(len(data)) if len(data[i]["problem"]) <= MAX_PROBLEM_CHARS][:count]
    return [(i, data[i]["problem"], data[i]["answer"]) for i in short]


def build_twin(
    output_dir: str | os.PathLike,
    suite: str | os.PathLike,
    steps: int = 60,
    seed: int = 0,
    template: str = "r1",
) -> str:
    """Write the twin (float32, tied embeddings) to ``output_dir``; return the path. ``template``: the prompts it
    learns to answer (the answer is the same R1-style text under any template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_drgrpo.demo.tiny import build_tiny_model
    from trl_drgrpo.templates import get_template

    out = Path(output_dir)
    build_tiny_model(
        out, hidden_size=128, num_heads=4, num_kv_heads=2, num_layers=2, intermediate_size=256, seed=seed
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt_template = get_template(template)
    rows = []
    for _, problem, answer in training_problems(suite):
        prompt = tokenizer(prompt_template.format(problem), add_special_tokens=False)["input_ids"]
        completion = tokenizer(twin_completion(answer), add_special_tokens=False)["input_ids"]
        rows.append((prompt + completion + [tokenizer.eos_token_id], len(prompt)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, prompt_length) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
        mask[i, : len(ids)] = 1
    torch.manual_seed(seed)
    random.seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    model.save_pretrained(out)
    (out / "twin_loss.txt").write_text(f"{loss.item():.4f}\n")
    return str(out)
