"""Short causal-LM pretraining of a tiny model on synthetic worked examples (CPU, about a minute).

The result is a "base model" for the demo: under a template (``no`` by default) it answers the
synthetic arithmetic problems with ``\\boxed{}`` answers that are only partly right (the corpus holds
deliberate slips, see ``trl_drgrpo.demo.synthetic``), so Dr. GRPO with the math reward can improve it.

CLI: ``python -m trl_drgrpo.demo.pretrain OUTPUT_DIR [--steps 600 --hidden_size 128 ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .synthetic import pretraining_examples
from .tiny import build_tiny_model


@dataclass
class PretrainArguments:
    """Settings of ``pretrain`` (model size, corpus and optimisation)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    num_examples: int = 20000
    template: str = "no"
    error_rate: float = 0.6
    error_offset: int = 1
    unboxed_rate: float = 0.2
    drill_fraction: float = 0.0
    drill_size: int = 8
    steps_rate: float = 0.0
    ramble_rate: float = 0.0
    ramble_continue: float = 0.5
    result_first: bool = False
    max_operand: int = 20
    max_mul_operand: int = 9
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    log_every: int = 50
    # torch threads (0 = torch's default). 1 is often fastest on a small shared CPU: spinning OpenMP
    # threads slow down many-fold when other processes compete for the cores.
    num_threads: int = 0


def _encode(tokenizer, examples: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """Token ids of prompt + completion, and the prompt length (its tokens are not trained on)."""
    encoded = []
    for prompt, completion in examples:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        encoded.append((p + c, len(p)))
    return encoded


def _batch(rows: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, prompt_len) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def weights_digest(model_dir: str | os.PathLike) -> str:
    """SHA-256 over a saved model's tensors (names, dtypes, shapes and bytes, in name order).

    Independent of the file's layout and metadata, so two runs that trained the same weights agree.
    """
    import hashlib

    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {model_dir}")
    tensors = {}
    for f in files:
        tensors.update(load_file(str(f)))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def pretrain(
    output_dir: str | os.PathLike, args: PretrainArguments | None = None, *, init_dir: str | None = None
) -> str:
    """Build a tiny model (or load ``init_dir``), train it on worked examples, save to ``output_dir``.

    Returns ``output_dir``, which also gets ``pretrain_log.json`` (arguments, per-step losses). The loss covers
    completion tokens only.
    """
    args = args or PretrainArguments()
    if args.steps < 1 or args.batch_size < 1 or args.num_examples < 1:
        raise ValueError(
            f"steps, batch_size and num_examples must be >= 1, got {args.steps}, {args.batch_size}, {args.num_examples}"
        )
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        source = init_dir or build_tiny_model(
            tmp,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            num_kv_heads=args.num_kv_heads,
            intermediate_size=args.intermediate_size,
            seed=args.seed,
        )
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source)
    examples = pretraining_examples(
        args.num_examples,
        args.seed,
        template=args.template,
        error_rate=args.error_rate,
        error_offset=args.error_offset,
        unboxed_rate=args.unboxed_rate,
        drill_fraction=args.drill_fraction,
        drill_size=args.drill_size,
        steps_rate=args.steps_rate,
        ramble_rate=args.ramble_rate,
        ramble_continue=args.ramble_continue,
        result_first=args.result_first,
        max_operand=args.max_operand,
        max_mul_operand=args.max_mul_operand,
        eos=tokenizer.eos_token,
    )
    data = _encode(tokenizer, examples)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay, betas=(0.9, 0.98)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, args.warmup_steps, args.steps)
    )
    rng = random.Random(args.seed)
    model.train()
    start, losses = time.time(), []
    for step in range(args.steps):
        loss = model(**_batch(rng.sample(data, min(args.batch_size, len(data))), tokenizer.pad_token_id)).loss
        losses.append(round(loss.item(), 5))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if args.log_every and (step % args.log_every == 0 or step == args.steps - 1):
            print(
                f"pretrain step {step + 1}/{args.steps} loss {loss.item():.4f} ({time.time() - start:.0f}s)",
                flush=True,
            )
    model.eval()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    _keep_fast_tokenizer_class(output_dir)
    log = {"args": asdict(args), "losses": losses, "seconds": round(time.time() - start, 1)}
    (Path(output_dir) / "pretrain_log.json").write_text(json.dumps(log) + "\n")
    return str(output_dir)


def _keep_fast_tokenizer_class(output_dir: str | os.PathLike) -> None:
    """Re-saving through ``Qwen2Tokenizer`` rewrites ``tokenizer_class``; restore the fast class."""
    path = Path(output_dir) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: ``python -m trl_drgrpo.demo.pretrain OUTPUT_DIR [--field value ...]``."""
    parser = argparse.ArgumentParser(
        description="Pretrain a tiny Qwen2 model on synthetic arithmetic worked examples."
    )
    parser.add_argument("output_dir")
    parser.add_argument(
        "--init_dir", default=None, help="start from this model folder instead of a fresh tiny model"
    )
    for f in fields(PretrainArguments):
        parser.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    ns = vars(parser.parse_args(argv))
    output_dir, init_dir = ns.pop("output_dir"), ns.pop("init_dir")
    print(pretrain(output_dir, PretrainArguments(**ns), init_dir=init_dir))


if __name__ == "__main__":
    main()
