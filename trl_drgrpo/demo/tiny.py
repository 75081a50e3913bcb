"""A tiny, random-weight Qwen2 model and a byte-level BPE tokenizer, built offline.

Tests, the demo and CI need a causal LM that loads through ``AutoModelForCausalLM`` /
``AutoTokenizer`` without touching the Hub. ``build_tiny_model`` writes one: a small
``Qwen2ForCausalLM`` with seeded random weights and a byte-level BPE tokenizer trained on a
built-in corpus (math text, digits, LaTeX and the prompt templates), so it round-trips any text
exactly and keeps the chat markers as single tokens.

CLI: ``python -m trl_drgrpo.demo.tiny OUTPUT_DIR [--hidden_size 64 ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from ..templates import available_templates, get_template
from .synthetic import pretraining_texts

EOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (EOS_TOKEN, IM_START, IM_END)
DEFAULT_VOCAB_SIZE = 512
# transformers routes every ``qwen2`` checkpoint to ``Qwen2Tokenizer``, which rebuilds the pipeline as
# NFC + this split + byte level whatever tokenizer.json says; we train with the same pipeline so that
# ``AutoTokenizer`` and ``PreTrainedTokenizerFast`` give identical ids (digits are single-character pieces).
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_MATH_TEXT = r"""
What is 37 + 48? Let's compute step by step. 37 + 48 = 85. The answer is \boxed{85}.
What is 91 - 56? We subtract: 91 - 56 = 35. So the final answer is \boxed{35}.
What is 12 * 7? Multiply: 12 * 7 = 84. Therefore the answer is \boxed{84}.
Compute 3 \times 4 + 5 = 17, then \frac{1}{2} + \frac{1}{3} = \frac{5}{6}.
Let $x$ be a real number such that $x^2 - 5x + 6 = 0$. Then $x = 2$ or $x = 3$.
The sum of the first $n$ positive integers is $\frac{n(n+1)}{2}$.
Find the value of $\sqrt{16} + 2^3$. We have $\sqrt{16} = 4$ and $2^3 = 8$, so the answer is $\boxed{12}$.
Solution: First, note that the triangle has sides 3, 4 and 5, so its area is 6.
The probability is $\dfrac{3}{8}$. Hence $\left( a + b \right)^2 = a^2 + 2ab + b^2$.
<think> reasoning process here </think> <answer> answer here </answer>
Step 1: add the ones digits. Step 2: carry the tens. Step 3: write the result.
Question: Answer: Solution: Therefore, Thus, So, Hence, We get, which gives
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 40 50 60 70 80 90 100 1000
+ - * / = < > ( ) [ ] { } ^ _ \cdot \pi \infty \leq \geq \neq \pm \sin \cos \tan \log
"""


def _corpus() -> list[str]:
    """Text the BPE merges are learned from: math prose, numbers, LaTeX and every template."""
    texts = [line for line in _MATH_TEXT.splitlines() if line.strip()]
    for name in available_templates():
        texts.append(get_template(name).format("What is 37 + 48?"))
    # worked examples of the synthetic task, so its phrases become few tokens (shorter demo rollouts)
    texts.extend(pretraining_texts(400, seed=12345, eos=""))
    texts.extend(
        f"{a} + {b} = {a + b}. {a} - {b} = {a - b}. {a} * {b} = {a * b}."
        for a in range(0, 100, 7)
        for b in range(1, 30, 3)
    )
    return texts * 4


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on the built-in corpus.

    Lossless on any NFC-normalized text (all 256 bytes are in the vocabulary); like Qwen2's own
    tokenizer it NFC-normalizes its input, so decomposed unicode comes back composed.
    """
    base = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    if vocab_size < base:
        raise ValueError(
            f"vocab_size must be >= {base} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size}"
        )
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )


def _force_fast_tokenizer_class(output_dir: Path) -> None:
    """Make ``AutoTokenizer`` load the plain fast tokenizer, not a Qwen2 class that may drop spaces."""
    path = output_dir / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["clean_up_tokenization_spaces"] = False
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def build_tiny_model(
    output_dir: str | os.PathLike,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> str:
    """Write a random-weight ``Qwen2ForCausalLM`` and its tokenizer to ``output_dir``; return the path.

    The model's vocabulary is the tokenizer's (``vocab_size`` caps it); weights depend only on the
    arguments and ``seed``.
    """
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _force_fast_tokenizer_class(out)
    return str(out)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: ``python -m trl_drgrpo.demo.tiny OUTPUT_DIR``."""
    parser = argparse.ArgumentParser(description="Write a tiny random Qwen2 model and byte-level tokenizer.")
    parser.add_argument("output_dir")
    parser.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--num_heads", type=int, default=4)
    parser.add_argument("--num_kv_heads", type=int, default=2)
    parser.add_argument("--intermediate_size", type=int, default=128)
    parser.add_argument("--max_position_embeddings", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = vars(parser.parse_args(argv))
    path = build_tiny_model(args.pop("output_dir"), **args)
    print(path)


if __name__ == "__main__":
    main()
