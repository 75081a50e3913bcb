"""Every recipe YAML parses through the training script's parser and follows the paper's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from trl import ModelConfig, TrlParser

from trl_drgrpo.config import DrGRPOConfig, DrGRPOScriptArguments, batch_shape
from trl_drgrpo.evaluation.callback import interval_from_args

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
# recipes/demo and recipes/lab hold the CPU demo and the bias lab, not the paper's runs
PAPER_RECIPES = sorted(p for p in RECIPES_DIR.glob("*/*.yaml") if p.parent.name not in ("demo", "lab"))
DEMO_RECIPE = RECIPES_DIR / "demo" / "tiny_drgrpo.yaml"
BENCHMARKS = {"aime", "amc", "math", "minerva", "olympiad_bench"}
# (model, template) per recipe, as in the paper
EXPECTED = {
    "qwen2.5-math-1.5b/drgrpo_r1.yaml": ("Qwen/Qwen2.5-Math-1.5B", "r1", "hiyouga/math12k"),
    "qwen2.5-math-1.5b/drgrpo_qwen_math.yaml": ("Qwen/Qwen2.5-Math-1.5B", "qwen_math", "hiyouga/math12k"),
    "qwen2.5-math-7b/drgrpo_qwen_math.yaml": (
        "Qwen/Qwen2.5-Math-7B",
        "qwen_math",
        "aidando73/math_level3to5_data",
    ),
    "qwen2.5-math-7b/drgrpo_r1.yaml": ("Qwen/Qwen2.5-Math-7B", "r1", "aidando73/math_level3to5_data"),
    "llama-3.2-3b/drgrpo_r1.yaml": ("meta-llama/Llama-3.2-3B", "r1", "hiyouga/math12k"),
    "llama-3.2-3b-numinaqa/drgrpo_r1.yaml": ("lkevinzc/Llama-3.2-3B-NuminaQA", "r1", "hiyouga/math12k"),
}
# The bias ablation is a pair of CLI overrides on any recipe: (overrides, loss_type, scale_rewards)
ABLATIONS = {
    "drgrpo": ([], "dr_grpo", "none"),
    "length_only": (["--length_normalization", "true"], "grpo", "none"),
    "std_only": (["--std_normalization", "true"], "dr_grpo", "group"),
    "grpo": (["--length_normalization", "true", "--std_normalization", "true"], "grpo", "group"),
}


def parse(path: Path, *overrides: str):
    parser = TrlParser((DrGRPOScriptArguments, DrGRPOConfig, ModelConfig))
    # bf16 recipes need a GPU unless use_cpu is set; that is the only change made for parsing here
    return parser.parse_args_and_config(["--config", str(path), "--use_cpu", "true", *overrides])


def test_every_expected_recipe_exists():
    assert {str(p.relative_to(RECIPES_DIR)) for p in PAPER_RECIPES} == set(EXPECTED)


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_paper_recipe_settings(path):
    script, train, model = parse(path)
    name, template, dataset = EXPECTED[str(path.relative_to(RECIPES_DIR))]
    assert (model.model_name_or_path, script.template, script.dataset_name) == (name, template, dataset)
    assert model.dtype == "bfloat16"
    # Dr. GRPO: no length or std normalization, no KL, constant normalizer = generation budget
    assert (train.length_normalization, train.std_normalization) == (False, False)
    assert (train.loss_type, train.scale_rewards) == ("dr_grpo", "none")
    assert train.beta == 0.0 and train.loss_normalizer == 3000.0
    # sampling
    assert (train.max_completion_length, train.temperature, train.top_p, train.num_generations) == (
        3000,
        1.0,
        1.0,
        8,
    )
    # batch geometry: 128 samples per optimizer step, 1024 (128 questions) per generation, for any process count
    assert (train.samples_per_step, train.samples_per_rollout) == (128, 1024)
    # parsed in one process: the accumulation makes up for the missing 7 GPUs
    assert train.per_device_train_batch_size * train.gradient_accumulation_steps == 128
    assert train.generation_batch_size == 1024
    assert train.steps_per_generation // train.gradient_accumulation_steps == 8
    # on 8 processes: no accumulation, 8 micro-steps per rollout
    accumulation, generation = batch_shape(train.per_device_train_batch_size, 8, 128, 1024)
    assert train.per_device_train_batch_size * accumulation * 8 == 128 and generation == 1024
    assert train.num_iterations == 1 and train.epsilon == 0.2
    # the paper's code (train_zero_math.py, examples/*.sh): std epsilon, length, truncation, endings
    assert train.std_eps == 1e-8
    assert train.num_train_epochs == 20 and train.max_steps == -1  # --num_prompt_epoch 20
    assert train.truncated_completion_reward == 0.0
    assert train.endings == "paper" and script.master_weights == "fp32"
    # optimiser
    assert train.learning_rate == 1e-6 and train.lr_scheduler_type == "constant"
    assert (train.adam_beta2, train.weight_decay, train.max_grad_norm) == (0.95, 0.0, 1.0)
    assert train.bf16 and train.gradient_checkpointing
    # generation with colocated, sleeping vLLM
    assert train.use_vllm and train.vllm_mode == "colocate" and train.vllm_enable_sleep_mode
    # evaluation on the five benchmarks before training and every 16 rollouts (128 optimizer steps); reporting
    assert set(script.eval_benchmarks.split(",")) == BENCHMARKS
    assert (script.eval_every_rollouts, script.eval_every_steps, script.eval_at_start) == (16, None, True)
    assert interval_from_args(train, script.eval_every_rollouts, script.eval_every_steps) == 128
    assert train.save_steps == 128  # a checkpoint with each evaluation
    assert train.vllm_gpu_memory_utilization == 0.35
    assert "wandb" in train.report_to


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_bias_ablation_overrides(ablation):
    overrides, loss_type, scale_rewards = ABLATIONS[ablation]
    _, train, _ = parse(RECIPES_DIR / "qwen2.5-math-1.5b" / "drgrpo_r1.yaml", *overrides)
    assert (train.loss_type, train.scale_rewards) == (loss_type, scale_rewards)


# Each recipe names its source script; every setting line carries a comment naming where its number comes from.
SOURCES = {
    "qwen2.5-math-1.5b/drgrpo_r1.yaml": "examples/qwen2.5-math-1.5b.sh",
    "qwen2.5-math-1.5b/drgrpo_qwen_math.yaml": "examples/qwen2.5-math-1.5b.sh",
    "qwen2.5-math-7b/drgrpo_qwen_math.yaml": "examples/qwen2.5-math-7b.sh",
    "qwen2.5-math-7b/drgrpo_r1.yaml": "examples/qwen2.5-math-7b.sh",
    "llama-3.2-3b/drgrpo_r1.yaml": "examples/llama3.2-3b-numinaqa.sh",
    "llama-3.2-3b-numinaqa/drgrpo_r1.yaml": "examples/llama3.2-3b-numinaqa.sh",
}
# Names only (no number from the paper) or this project's own bookkeeping: no source comment required.
UNSOURCED = {
    "run_name",
    "output_dir",
    "logging_steps",
    "save_strategy",
    "save_only_model",
    "use_vllm",
    "warmup_steps",
}


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_every_recipe_number_names_its_source(path):
    text = path.read_text()
    assert SOURCES[str(path.relative_to(RECIPES_DIR))] in text
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith(" "):
            continue
        key = line.split(":", 1)[0]
        if key not in UNSOURCED:
            assert " # " in line, f"{path.name}: {key!r} has no comment naming its source"


def test_report_to_is_overridable():
    _, train, _ = parse(RECIPES_DIR / "qwen2.5-math-7b" / "drgrpo_qwen_math.yaml", "--report_to", "none")
    assert train.report_to in ([], "none", ["none"])


def test_demo_recipe_is_small_and_on_cpu():
    if not DEMO_RECIPE.exists():
        pytest.fail(f"missing {DEMO_RECIPE}")
    script, train, _ = parse(DEMO_RECIPE)
    assert train.use_cpu and not train.use_vllm and not train.bf16
    assert train.max_completion_length <= 128 and train.num_generations == 8
    assert script.template == "no" and (train.loss_type, train.scale_rewards) == ("dr_grpo", "none")


@pytest.mark.parametrize(
    "path", sorted(RECIPES_DIR.glob("*/*.yaml")), ids=lambda p: str(p.relative_to(RECIPES_DIR))
)
def test_recipes_train_only_tokens_with_gradient_where_exact(path):
    """gradient_tokens_only is on (off in the bias lab, whose figures were measured on TRL's loss path), and every
    setting that would make leaving out zero-advantage rows inexact is off."""
    _, train, _ = parse(path)
    assert train.gradient_tokens_only is (path.parent.name != "lab")
    assert train.beta == 0.0 and train.entropy_coef == 0.0 and not train.use_adaptive_entropy
    assert train.top_entropy_quantile == 1.0
