"""Configuration: ``DrGRPOConfig`` (the paper's recipe as defaults) and the training script's arguments."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from trl import GRPOConfig, ScriptArguments

from .objective import STD_EPS, check_length_weight_exponent
from .templates import check_endings

# TRL names for the same switches: loss_type <-> length normalization, scale_rewards <-> std normalization.
_LOSS_TYPE = {True: "grpo", False: "dr_grpo"}
_SCALE_REWARDS = {True: "group", False: "none"}

#: `truncated_completion_reward` default: the paper's 0 on answer-checking rewards, TRL's scores elsewhere.
AUTO = "auto"


def parse_truncation_reward(value: float | str | None) -> float | str | None:
    """`truncated_completion_reward` as given in Python, YAML or on the command line: a float, `"auto"` or None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("none", "null", "~"):
        return None
    if text == AUTO:
        return AUTO
    try:
        number = float(text) if not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(
            f"truncated_completion_reward must be a finite number, 'auto' or none, got {value!r}"
        )
    return number


def batch_shape(
    per_device_batch: int,
    processes: int,
    samples_per_step: int | None,
    samples_per_rollout: int | None,
    gradient_accumulation_steps: int = 1,
) -> tuple[int, int | None]:
    """Gradient-accumulation steps and generation batch size that realise a global batch shape.

    samples_per_step = per_device_batch * processes * gradient_accumulation_steps;
    samples_per_rollout = generation batch (a multiple of samples_per_step).
    """
    per_micro_step = per_device_batch * processes
    if samples_per_step is not None:
        if samples_per_step % per_micro_step:
            raise ValueError(
                f"samples_per_step={samples_per_step} is not a multiple of per_device_train_batch_size "
                f"({per_device_batch}) x {processes} processes; change one of them"
            )
        gradient_accumulation_steps = samples_per_step // per_micro_step
    step = per_micro_step * gradient_accumulation_steps
    if samples_per_rollout is not None and samples_per_rollout % step:
        raise ValueError(
            f"samples_per_rollout={samples_per_rollout} must be a multiple of the samples per step ({step})"
        )
    return gradient_accumulation_steps, samples_per_rollout


@dataclass
class DrGRPOConfig(GRPOConfig):
    r"""
    Configuration for [`DrGRPOTrainer`]: TRL's [`~trl.GRPOConfig`] with the defaults of the paper's Dr. GRPO
    recipe and two switches that reproduce its 2x2 ablation.

    Parameters:
        length_normalization (`bool` or `None`, defaults to `None` = `False`):
            Divide each response's token-loss sum by its own length |o_i| (GRPO). `False` divides by one constant
            (`loss_normalizer`) instead, removing the length bias (Dr. GRPO). Unset, it follows TRL's `loss_type`
            when that is given (`"grpo"` = `True`, `"dr_grpo"` = `False`), else `False`.
        std_normalization (`bool` or `None`, defaults to `None` = `False`):
            Divide each group's advantages by the std of its rewards (GRPO). `False` keeps
            `A_i = r_i - mean(r)`, removing the question-difficulty bias (Dr. GRPO). Unset, it follows TRL's
            `scale_rewards` when that is given (`"group"`/`True` = `True`, `"none"`/`False` = `False`), else `False`.
        loss_normalizer (`float` or `None`, defaults to `None`):
            The constant of Dr. GRPO's aggregation. `None` uses `max_completion_length`, the generation budget.
        length_weight_exponent (`float` or `None`, defaults to `None`):
            Research option: a graded length term, token weight `C^(alpha-1) |o_i|^-alpha` (`C` =
            `loss_normalizer`), alpha in [0, 1]; 1 is GRPO's length normalization, 0 Dr. GRPO's constant (both
            then run exactly as `length_normalization` does). Needs `beta=0` between 0 and 1.
        truncated_completion_reward (`float`, `"auto"` or `None`, defaults to `"auto"`):
            Score of a response that hit `max_completion_length` without an end of sequence. `"auto"`: 0 from each
            answer-checking reward (a function with `answer_reward = True`, such as [`MathReward`]: the paper's
            rule, a cut response has no final answer), the other functions' scores kept (TRL's behaviour). A
            number: that score from every reward function. `None`: every function's score kept.
        stop_strings (`list[str]` or `None`, defaults to `None`):
            Strings that end a response and are kept in it (`["</answer>"]` for the R1 template): vLLM stops
            there, transformers-generated responses are cut right after the first one.
        extra_eos_tokens (`list[str]` or `None`, defaults to `None`):
            Extra single tokens that end a response (vLLM and transformers generation, completion masks,
            truncation), e.g. `["<|im_end|>"]` for the Qwen-Math template on a base model.
        samples_per_step (`int` or `None`, defaults to `None`):
            Responses per optimizer step over all processes (the paper: 128); sets `gradient_accumulation_steps`
            from `per_device_train_batch_size` and the number of processes (`WORLD_SIZE`).
        samples_per_rollout (`int` or `None`, defaults to `None`):
            Responses generated per rollout over all processes (the paper: 1024); sets `generation_batch_size`.
        correct_reward_threshold (`float`, defaults to `1.0`):
            A response whose total reward is at least this counts as correct in the logged length metrics.
        std_eps (`float`, defaults to `1e-8`):
            Added to the group's reward std before dividing (GRPO, `std_normalization=True`; the paper's code: 1e-8,
            TRL: 1e-4).
        no_signal_patience (`int`, defaults to `3`):
            Warn (once) when this many consecutive rollouts have no group with any reward spread, i.e. every
            advantage is 0 and training does nothing. `0` turns the check off.
        gradient_tokens_only (`bool`, defaults to `True`):
            Run forward/backward only on the tokens that carry gradient, with TRL's update (see
            `trl_drgrpo.training.batching`): per-micro-batch padding trimming, rows with advantage exactly 0 left
            out where that is exact, length grouping within an optimizer step. `False` is TRL's training phase.

    Defaults that differ from `GRPOConfig`: `max_completion_length=3000`, `lr_scheduler_type="constant"`,
    `adam_beta2=0.95`, `vllm_importance_sampling_correction=False`; `beta=0` (no KL, no reference model),
    `temperature=1.0`, `top_p=1.0`, `top_k=0`, `num_generations=8`, `learning_rate=1e-6`, `epsilon=0.2`,
    `num_iterations=1`, `weight_decay=0.0`, `max_grad_norm=1.0` are restated for clarity. `loss_type` and
    `scale_rewards` are derived from the switches; setting them to a contradicting value is an error. Every other
    `GRPOConfig` option (entropy bonus and mask, off-policy mask, sequence-level importance sampling,
    `multi_objective_aggregation`, Liger kernels, ...) works as in TRL, on top of the paper's aggregation.
    """

    length_normalization: bool | None = field(
        default=None,
        metadata={
            "help": "Divide each response's loss by its own length |o_i| (GRPO; brings back the length bias). Unset: "
            "from loss_type if given ('grpo' = true, 'dr_grpo' = false), else false (Dr. GRPO)."
        },
    )
    std_normalization: bool | None = field(
        default=None,
        metadata={
            "help": "Divide advantages by the group's reward std (GRPO; brings back the difficulty bias). Unset: "
            "from scale_rewards if given ('group' = true, 'none' = false), else false (Dr. GRPO)."
        },
    )
    loss_normalizer: float | None = field(
        default=None,
        metadata={
            "help": "Dr. GRPO's constant loss normalizer. None uses max_completion_length (the budget)."
        },
    )
    length_weight_exponent: float | None = field(
        default=None,
        metadata={
            "help": "Research option: graded length term, token weight C^(alpha-1) |o_i|^-alpha with C = "
            "loss_normalizer and alpha in [0, 1] (1 = GRPO's length normalization, 0 = Dr. GRPO's constant). "
            "Unset: length_normalization decides. Strictly between 0 and 1 it needs beta=0."
        },
    )
    truncated_completion_reward: float | str | None = field(
        default=AUTO,
        metadata={
            "help": "Score of a response cut at max_completion_length. 'auto': 0 from answer-checking rewards "
            "(answer_reward = True, e.g. MathReward: the paper's rule), other functions' scores kept (TRL); a "
            "number: that score from every reward function; none: all scores kept."
        },
    )
    correct_reward_threshold: float = field(
        default=1.0,
        metadata={
            "help": "Total reward at or above which a response counts as correct in the length metrics."
        },
    )
    stop_strings: list[str] | None = field(
        default=None,
        metadata={
            "help": "Strings that end a response and stay in it, e.g. </answer> for the R1 template. vLLM stops "
            "there; with transformers generation the response is cut right after the first one."
        },
    )
    extra_eos_tokens: list[str] | None = field(
        default=None,
        metadata={
            "help": "Extra tokens that end a response in generation and in the loss masks, e.g. <|im_end|> for the "
            "Qwen-Math chat template on a base model whose end of sequence is <|endoftext|>."
        },
    )
    endings: str = field(
        default="paper",
        metadata={
            "help": "Where responses end, from the template, when stop_strings/extra_eos_tokens are unset (training "
            "script): 'paper' (r1 stops after </answer>; qwen_math and no: only the model's own EOS or the budget) "
            "or 'chat_end' (also <|im_end|> for qwen_math). See trl_drgrpo.templates."
        },
    )
    std_eps: float = field(
        default=STD_EPS,
        metadata={
            "help": "Epsilon added to the group reward std when std_normalization is on (the paper's code: 1e-8; "
            "TRL: 1e-4)."
        },
    )
    no_signal_patience: int = field(
        default=3,
        metadata={
            "help": "Warn once when this many consecutive rollouts have no group with any reward spread (every "
            "advantage 0, nothing learned). 0 turns the check off."
        },
    )
    gradient_tokens_only: bool = field(
        default=True,
        metadata={
            "help": "Train only on the tokens that carry gradient, with the same update as TRL: trim each "
            "micro-batch's all-padding columns, leave out rows whose advantage is exactly 0 where that is exact "
            "(beta=0, no entropy bonus or entropy mask), and group responses of similar length within an optimizer "
            "step. Logs drgrpo/trained_token_fraction; TRL's entropy and clip-ratio metrics then cover the trained "
            "rows only. False runs TRL's training phase as it is."
        },
    )
    samples_per_step: int | None = field(
        default=None,
        metadata={
            "help": "Responses per optimizer step over all processes (the paper: 128). Sets "
            "gradient_accumulation_steps = samples_per_step / (per_device_train_batch_size * processes)."
        },
    )
    samples_per_rollout: int | None = field(
        default=None,
        metadata={
            "help": "Responses generated per rollout over all processes (the paper: 1024 = 128 questions x 8). "
            "Sets generation_batch_size, hence steps_per_generation = samples_per_rollout / global batch."
        },
    )

    # The paper's recipe (Section 3.3 / Appendix): overridden or restated GRPOConfig defaults.
    max_completion_length: int | None = field(
        default=3000, metadata={"help": "Generation budget in tokens (the paper: 3000)."}
    )
    learning_rate: float = field(
        default=1e-6, metadata={"help": "AdamW learning rate (the paper: 1e-6, constant)."}
    )
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (the paper: 0.95)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    beta: float = field(
        default=0.0, metadata={"help": "KL coefficient. 0 = no KL term and no reference model."}
    )
    num_generations: int | None = field(default=8, metadata={"help": "Responses sampled per question (G)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature for rollouts."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling for rollouts (1.0 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling for rollouts (0 = off)."})
    epsilon: float = field(default=0.2, metadata={"help": "PPO clip range epsilon."})
    num_iterations: int = field(default=1, metadata={"help": "Optimisation epochs per generated batch (mu)."})
    vllm_importance_sampling_correction: bool = field(
        default=False,
        metadata={"help": "TRL's vLLM/trainer importance-sampling correction (the paper has none)."},
    )
    loss_type: str | None = field(
        default=None,
        metadata={
            "help": "TRL's name for the aggregation: 'dr_grpo' (length_normalization false) or 'grpo' (true); "
            "derived from length_normalization when unset. Other TRL loss types are refused."
        },
    )
    scale_rewards: str | None = field(
        default=None,
        metadata={
            "help": "TRL's name for the std switch: 'none' (std_normalization false) or 'group' (true); derived "
            "from std_normalization when unset. 'batch' is refused."
        },
    )

    def __post_init__(self) -> None:
        self.truncated_completion_reward = parse_truncation_reward(self.truncated_completion_reward)
        self._settle_length_weight()
        self._derive_trl_switches()
        self._derive_batch_shape()
        super().__post_init__()
        if self.max_completion_length is None or self.max_completion_length <= 0:
            raise ValueError(
                f"max_completion_length must be a positive integer, got {self.max_completion_length}"
            )
        if self.loss_normalizer is None:
            self.loss_normalizer = float(self.max_completion_length)
        if self.loss_normalizer <= 0:
            raise ValueError(
                f"loss_normalizer must be positive (Dr. GRPO divides by it), got {self.loss_normalizer}; "
                "leave it unset to use max_completion_length"
            )
        if self.std_eps < 0:
            raise ValueError(f"std_eps must be >= 0, got {self.std_eps}")
        if self.no_signal_patience < 0:
            raise ValueError(f"no_signal_patience must be >= 0 (0 = off), got {self.no_signal_patience}")
        check_endings(self.endings)

    def _settle_length_weight(self) -> None:
        """Validate `length_weight_exponent`; alpha = 1 and 0 are `length_normalization` true and false."""
        alpha = self.length_weight_exponent
        if alpha is None:
            return
        alpha = self.length_weight_exponent = check_length_weight_exponent(alpha)
        if self.length_normalization and alpha != 1.0:
            raise ValueError(
                f"length_weight_exponent={alpha:g} contradicts length_normalization=True (which is alpha = 1); "
                "set one of the two"
            )
        if 0.0 < alpha < 1.0 and self.beta != 0.0:
            raise ValueError(
                f"length_weight_exponent={alpha:g} needs beta=0 (the graded weight is applied through the "
                f"advantages, which the KL term does not see), got beta={self.beta}"
            )
        if alpha == 1.0:
            self.length_normalization = True
        elif self.length_normalization is None:
            self.length_normalization = False

    def _derive_batch_shape(self) -> None:
        """Per-process sizes from the global batch shape, for the number of processes launched (WORLD_SIZE)."""
        if self.samples_per_step is None and self.samples_per_rollout is None:
            return
        self.gradient_accumulation_steps, generation_batch_size = batch_shape(
            self.per_device_train_batch_size,
            int(os.environ.get("WORLD_SIZE", "1")),
            self.samples_per_step,
            self.samples_per_rollout,
            self.gradient_accumulation_steps,
        )
        if generation_batch_size is not None:
            self.generation_batch_size, self.steps_per_generation = generation_batch_size, None

    def _derive_trl_switches(self) -> None:
        """Settle each switch and its TRL name (`loss_type`, `scale_rewards`) together; refuse a contradiction.

        A switch left unset follows its TRL name when that is given (so `GRPOConfig(loss_type="grpo", ...)` keeps
        its meaning after the drop-in), else takes the paper's value (`False`).
        """
        for switch, name, names in (
            ("length_normalization", "loss_type", _LOSS_TYPE),
            ("std_normalization", "scale_rewards", _SCALE_REWARDS),
        ):
            flag, value = getattr(self, switch), getattr(self, name)
            trl_value = _SCALE_REWARDS[value] if isinstance(value, bool) else value  # TRL accepts bools
            implied = {v: k for k, v in names.items()}.get(trl_value)
            if value is not None and implied is None:
                raise ValueError(
                    f"{name}={value!r} is neither of the paper's two settings ({names[False]!r}: {switch}=False, "
                    f"{names[True]!r}: {switch}=True). DrGRPOTrainer trains Dr. GRPO and its GRPO ablations only; "
                    f"use trl.GRPOTrainer for {name}={value!r}."
                )
            if flag is None:
                flag = implied if value is not None else False
            elif value is not None and implied != flag:
                raise ValueError(
                    f"{name}={value!r} contradicts {switch}={flag}, which means {name}={names[flag]!r}. Set one of "
                    "the two (or both consistently)."
                )
            setattr(self, switch, bool(flag))
            setattr(self, name, names[bool(flag)])


@dataclass
class DrGRPOScriptArguments(ScriptArguments):
    """Arguments of `recipes/train.py` beyond the model and training configs."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id, a `save_to_disk` folder, or a .json/.jsonl/.parquet file."},
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split of dataset_name evaluated by the trainer (reward on held-out questions) when "
            "eval_strategy is set; None = no such evaluation (see eval_benchmarks for the paper's benchmarks)."
        },
    )
    problem_column: str = field(default="problem", metadata={"help": "Column holding the question."})
    answer_column: str = field(default="answer", metadata={"help": "Column holding the gold answer."})
    template: str = field(
        default="qwen_math", metadata={"help": "Prompt template: r1, qwen_math, no (or registered)."}
    )
    reward: str = field(
        default="math",
        metadata={
            "help": "Reward by name: math (this project's grader), math_verify (plain Math-Verify), a "
            "registered name, or `module.path:function` taking (answer, gold)."
        },
    )
    answer_format: str = field(
        default="paper",
        metadata={
            "help": "Answer extraction rules: paper (the paper's exact r1 tags / \\boxed{} rules) or lenient.",
            "choices": ["paper", "lenient"],
        },
    )
    reward_num_workers: int = field(
        default=2, metadata={"help": "Grading worker processes per training process."}
    )
    reward_timeout_s: float = field(
        default=5.0,
        metadata={
            "help": "Hard time limit for grading one response (last resort; rules bound the work first)."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N questions."})
    rollout_func: str | None = field(
        default=None,
        metadata={
            "help": "Import path `module.function` of a TRL rollout_func replacing generation (advanced)."
        },
    )
    eval_benchmarks: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated benchmarks for in-training eval (aime,amc,math,minerva,olympiad_bench)."
        },
    )
    eval_every_rollouts: int = field(
        default=16,
        metadata={
            "help": "In-training eval every N rollouts (the paper: 16 = 128 optimizer steps with its batch shape); "
            "the step interval is derived from the batch shape."
        },
    )
    eval_every_steps: int | None = field(
        default=None,
        metadata={"help": "In-training eval every N optimizer steps; overrides eval_every_rollouts."},
    )
    eval_at_start: bool = field(
        default=True, metadata={"help": "Evaluate before the first update (step 0), as the paper."}
    )
    master_weights: str = field(
        default="fp32",
        metadata={
            "help": "fp32: fp32 master weights wherever DeepSpeed does not keep them (the policy is loaded in fp32 "
            "and computed in bf16 autocast with bf16: true); model_dtype: load it in `dtype` (pure bf16 without "
            "DeepSpeed). See trl_drgrpo.training.precision."
        },
    )
    eval_limit: int | None = field(
        default=None, metadata={"help": "Evaluate only the first N problems per benchmark."}
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "load_from_disk folder of benchmarks; None = Hub."}
    )
    eval_max_tokens: int | None = field(
        default=None, metadata={"help": "Eval budget; None = max_completion_length."}
    )
    eval_template: str | None = field(
        default=None, metadata={"help": "Eval template; None = the training template."}
    )
