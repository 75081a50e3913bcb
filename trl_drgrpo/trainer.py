"""``DrGRPOTrainer``: TRL's ``GRPOTrainer`` with the advantage and the loss aggregation of Dr. GRPO.

A thin delta on TRL's own code path. ``DrGRPOConfig`` derives TRL's ``loss_type``/``scale_rewards`` from the
paper's two switches (``dr_grpo``/``none`` for Dr. GRPO), so TRL's loss and every feature composed with it
(entropy bonus and mask, off-policy mask, sequence-level importance sampling, KL, MoE auxiliary loss, Liger
kernels, all of TRL's metrics) run unchanged. What differs from TRL, following the paper and its code (oat):

* ``_calculate_rewards``: a response cut at the budget scores ``truncated_completion_reward`` (by default 0 from
  answer-checking rewards such as :class:`~trl_drgrpo.rewards.MathReward`, the paper's rule);
* ``_generate_and_score_completions``: advantages from :func:`objective.group_advantages` (the paper's std
  epsilon); the paper's metrics; a loud warning when rollouts carry no learning signal;
* ``_compute_loss``: Dr. GRPO's constant normaliser is ``loss_normalizer`` (default: the generation budget,
  which is what TRL's ``dr_grpo`` divides by).
* ``_prepare_inputs``/``compute_loss`` (``gradient_tokens_only``, on by default;
  :class:`~trl_drgrpo.training.gradient_tokens.GradientTokensMixin`): the same update on fewer tokens,
  per micro-batch padding trimmed, zero-advantage rows left out where exact, rows grouped by length within an
  optimizer step (:mod:`trl_drgrpo.training.batching`; docs/gradient-tokens.md).

:mod:`trl_drgrpo.objective` is the readable specification; the tests hold this trainer to it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from transformers.utils import logging
from trl import GRPOTrainer

from .config import AUTO, DrGRPOConfig
from .objective import graded_advantages, group_advantages
from .training.checkpointing import CrashSafeTrainerMixin
from .training.gradient_tokens import GradientTokensMixin
from .training.model_card import PAPER, write_model_card
from .training.vllm_cpu import use_live_cpu_weights

logger = logging.get_logger(__name__)

#: Share of truncated completions in one rollout at or above which the truncation reward warning fires.
TRUNCATION_WARNING_FRACTION = 0.9


class NoLearningSignalWarning(UserWarning):
    """Rollouts whose advantages are all 0: training runs but learns nothing."""


def cut_after_stop(ids: list[int], stop_strings: list[str], tokenizer: Any) -> list[int]:
    """The shortest prefix of `ids` whose text contains one of `stop_strings` (all of `ids` if none does)."""

    def stops(length: int) -> bool:
        text = tokenizer.decode(ids[:length], skip_special_tokens=False)
        return any(stop in text for stop in stop_strings)

    if not stops(len(ids)):
        return ids
    low, high = 1, len(ids)  # stops(high) holds; find the smallest such length by bisection
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if stops(middle) else (middle + 1, high)
    return ids[:high]


class DrGRPOTrainer(CrashSafeTrainerMixin, GradientTokensMixin, GRPOTrainer):
    """Drop-in replacement for ``trl.GRPOTrainer`` that trains with Dr. GRPO (or any of the paper's ablations).

    Use it exactly like ``GRPOTrainer`` with a :class:`DrGRPOConfig`. Besides TRL's metrics it logs
    ``drgrpo/correct_mean_length``, ``drgrpo/incorrect_mean_length``, ``drgrpo/truncated_fraction`` and
    ``drgrpo/zero_std_group_fraction``, and warns (:class:`NoLearningSignalWarning`) when rollouts carry no
    learning signal. Callbacks with a ``bind(trainer)`` method are bound to the trainer.
    """

    _tag_names = ["trl", "grpo", "dr-grpo", "trl_drgrpo"]
    _name = "Dr. GRPO"
    _paper = PAPER  # the model card cites arXiv 2503.20783 (trl_drgrpo.model_card)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None) -> None:
        """TRL's card citing the Dr. GRPO paper, with the dataset and the run's Dr. GRPO setup."""
        write_model_card(self, super().create_model_card, model_name, dataset_name, tags)

    def __init__(self, model: Any, reward_funcs: Any = None, args: DrGRPOConfig | None = None, **kwargs: Any):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = DrGRPOConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-DrGRPO")
        if not isinstance(args, DrGRPOConfig):
            raise TypeError(
                f"DrGRPOTrainer needs a DrGRPOConfig, got {type(args).__name__}: "
                "replace `GRPOConfig(...)` by `DrGRPOConfig(...)` (same arguments)"
            )
        if args.use_vllm and args.vllm_mode == "colocate":
            use_live_cpu_weights()  # CPU test env only (training/vllm_cpu.py); a no-op on GPUs
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        self.truncation_columns, self.truncation_value = truncation_rule(
            args.truncated_completion_reward, self.reward_funcs
        )
        self.truncation_rule = describe_truncation_rule(
            args.truncated_completion_reward,
            self.truncation_columns,
            self.truncation_value,
            self.reward_func_names,
        )
        logger.info(
            "Responses cut at max_completion_length=%d: %s", self.max_completion_length, self.truncation_rule
        )
        self._rollout: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._prompt_lengths: list[int] | None = None  # of the completions being scored (set by _generate)
        # Rollouts generated, and the one whose completion table was written (once per rollout, see log()).
        self._rollouts_generated = self._rollouts_in_table = 0
        self._flat_rollouts = 0  # consecutive training rollouts in which no group has any reward spread
        self._warned_truncation = self._warned_flat = False
        if args.multi_objective_aggregation == "normalize_then_sum":
            logger.warning(
                "multi_objective_aggregation='normalize_then_sum' takes TRL's advantages as they are: each reward is "
                "divided by its group std and the sum by the batch std, whatever std_normalization says."
            )
        if args.extra_eos_tokens:
            self._add_eos_tokens(args.extra_eos_tokens)
        if args.stop_strings and self.use_vllm:
            kwargs = self.vllm_generation.generation_kwargs
            kwargs["stop"] = [*(kwargs.get("stop") or []), *args.stop_strings]
            kwargs["include_stop_str_in_output"] = True
        for callback in self.callback_handler.callbacks:
            if callable(getattr(callback, "bind", None)):
                callback.bind(self)
        self._init_gradient_tokens_only()

    def _add_eos_tokens(self, tokens: list[str]) -> None:
        """Make `tokens` end responses in generation (vLLM or transformers) and in TRL's completion masks."""
        vocab = self._tokenizer.get_vocab()
        unknown = [t for t in tokens if t not in vocab]
        if unknown:
            raise ValueError(f"extra_eos_tokens {unknown} are not single tokens of this tokenizer")
        new_ids = [vocab[t] for t in tokens if vocab[t] not in self.eos_token_ids]
        self.eos_token_ids = [*self.eos_token_ids, *new_ids]
        if self.use_vllm:
            kwargs = self.vllm_generation.generation_kwargs
            kwargs["stop_token_ids"] = [*(kwargs.get("stop_token_ids") or []), *new_ids]
        else:
            self.generation_kwargs["eos_token_id"] = self.eos_token_ids
            self.generation_config.eos_token_id = self.eos_token_ids

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        completion_ids, logprobs = super()._generate_single_turn(
            prompt_ids, images, multimodal_fields, num_generations, has_tool_images
        )
        if self.args.stop_strings and not self.use_vllm:  # vLLM already stopped at the strings
            completion_ids = [
                cut_after_stop(ids, self.args.stop_strings, self._tokenizer) for ids in completion_ids
            ]
        return completion_ids, logprobs

    # ------------------------------------------------------------------ rewards and advantages
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (gathered over processes), with the truncation reward applied; keeps what the metrics need."""
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        device = rewards_per_func.device
        prompt_lengths = self._prompt_lengths
        if prompt_lengths is None or len(prompt_lengths) != len(completion_ids_list):
            prompt_lengths = [None] * len(completion_ids_list)
        local_truncated = [
            self._is_truncated(ids, length)
            for ids, length in zip(completion_ids_list, prompt_lengths, strict=True)
        ]
        truncated = self.accelerator.gather(torch.tensor(local_truncated, device=device))
        lengths = self.accelerator.gather(
            torch.tensor([len(ids) for ids in completion_ids_list], device=device)
        )
        if any(self.truncation_columns):
            # The paper gives a response that exhausts the budget without finishing zero reward: it has no answer.
            columns = torch.tensor(self.truncation_columns, device=device)
            rewards_per_func[truncated.unsqueeze(1) & columns.unsqueeze(0)] = self.truncation_value
        self._rollout = (rewards_per_func, truncated, lengths)
        return rewards_per_func

    def _generate(self, prompts: list):
        output = super()._generate(prompts)
        self._prompt_lengths = [len(ids) for ids in output[0]]  # for the context-limit rule in _is_truncated
        return output

    def context_limit(self) -> int | None:
        """Prompt + response tokens at which generation stops (vLLM's ``max_model_len``), as TRL reads it."""
        if self.use_vllm and self.vllm_mode == "colocate":
            try:
                return int(self.vllm_generation.llm.llm_engine.model_config.max_model_len)
            except AttributeError:
                pass
        if self.use_vllm and self.args.vllm_max_model_length:
            return int(self.args.vllm_max_model_length)
        config = getattr(self.model, "config", None)
        config = getattr(config, "text_config", None) or config
        return getattr(config, "max_position_embeddings", None)

    def _is_truncated(self, ids: list[int], prompt_length: int | None = None) -> bool:
        """Cut by the budget: `max_completion_length` tokens that do not end with EOS or a stop string; or cut by
        the context limit: prompt + response fill :meth:`context_limit` without an end (vLLM stops there with
        finish_reason "length", shorter than the budget), when `prompt_length` is known.

        A response whose EOS or stop string falls exactly on the budget's last token finished (vLLM's
        finish_reason "stop", as in the paper's code), so it is not truncated.
        """
        limit = self.context_limit() if prompt_length is not None else None
        at_context_limit = limit is not None and prompt_length + len(ids) >= limit
        if len(ids) < self.max_completion_length and not at_context_limit:
            return False
        if ids and ids[-1] in self.eos_token_ids:
            return False
        if self.args.stop_strings:
            # A stop string spans at most len(stop) tokens; vLLM may keep a few characters after it in the last token.
            tail = ids[-(max(len(stop) for stop in self.args.stop_strings) + 1) :]
            text = self._tokenizer.decode(tail, skip_special_tokens=False)
            return not any(stop in text for stop in self.args.stop_strings)
        return True

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, truncated, lengths = self._rollout
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = self._total_reward(rewards_per_func)
        if self.multi_objective_aggregation == "sum_then_normalize":
            # TRL computed the same advantages (scale_rewards is derived from std_normalization) except for the std
            # epsilon, which TRL fixes at 1e-4; objective.py is the reference, with the paper's epsilon.
            advantages = group_advantages(
                rewards, group_size, std_normalization=self.args.std_normalization, eps=self.args.std_eps
            )
            local = output["completion_ids"].size(0)
            start = self.accelerator.process_index * local
            output["advantages"] = advantages[start : start + local]
            logged = self._logs["advantages"]  # the completions table shows the advantages trained on
            for _ in range(min(advantages.numel(), len(logged))):
                logged.pop()
            logged.extend(advantages.tolist())
        self._log_rollout_metrics(mode, rewards, truncated, lengths, group_size)
        self._rollouts_generated += 1
        if mode == "train":
            self._warn_if_no_signal(rewards, truncated, group_size)
        return output

    def _total_reward(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """Weighted sum over reward functions; NaN where no function could score the completion."""
        weights = self.reward_weights.to(rewards_per_func.device)
        total = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return total

    def _log_rollout_metrics(
        self,
        mode: str,
        rewards: torch.Tensor,
        truncated: torch.Tensor,
        lengths: torch.Tensor,
        group_size: int,
    ) -> None:
        """The quantities the paper plots: lengths of correct/incorrect responses, truncation, zero-spread groups."""
        metrics = self._metrics[mode]
        lengths = lengths.float()
        correct = rewards >= self.args.correct_reward_threshold
        if correct.any():
            metrics["drgrpo/correct_mean_length"].append(lengths[correct].mean().item())
        if (~correct).any():
            metrics["drgrpo/incorrect_mean_length"].append(lengths[~correct].mean().item())
        metrics["drgrpo/truncated_fraction"].append(truncated.float().mean().item())
        if not self.tools:
            self._replace_length_metrics(metrics, truncated, lengths)
        metrics["drgrpo/zero_std_group_fraction"].append(
            zero_spread_groups(rewards, group_size).float().mean().item()
        )

    @staticmethod
    def _replace_length_metrics(metrics: dict, truncated: torch.Tensor, lengths: torch.Tensor) -> None:
        """TRL's clipped ratio and terminated lengths under this trainer's truncation rule.

        TRL calls a response clipped when its last token is not EOS/pad, so every response that stopped at a stop
        string (R1's ``</answer>``) or at the context limit would count wrongly (clipped, resp. terminated).
        Here clipped means ``drgrpo/truncated_fraction``'s truncated; the values TRL just appended are replaced.
        """
        terminated = lengths[~truncated]
        if terminated.numel() == 0:  # as TRL: 0 when no response terminated
            terminated = torch.zeros(1, device=lengths.device)
        values = {
            "completions/clipped_ratio": truncated.float().mean(),
            "completions/mean_terminated_length": terminated.mean(),
            "completions/min_terminated_length": terminated.min(),
            "completions/max_terminated_length": terminated.max(),
        }
        for key, value in values.items():
            if metrics.get(key):
                metrics[key][-1] = value.item()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, with the completion table (parquet file, W&B/trackio table, console sample) written once
        per rollout: TRL writes the whole table at every log although it changes once per rollout."""
        table = self.log_completions
        fresh = self._rollouts_generated != self._rollouts_in_table
        self.log_completions = table and fresh
        try:
            super().log(logs, start_time)
        finally:
            self.log_completions = table
        if table and fresh:
            self._rollouts_in_table = self._rollouts_generated

    def _warn_if_no_signal(self, rewards: torch.Tensor, truncated: torch.Tensor, group_size: int) -> None:
        """Warn loudly (once each) when rollouts carry no learning signal, naming the cause and the fix."""
        budget = self.max_completion_length
        flat = zero_spread_groups(rewards, group_size).all().item()
        if (
            any(self.truncation_columns)
            and not self._warned_truncation
            and truncated.float().mean().item() >= TRUNCATION_WARNING_FRACTION
        ):
            self._warned_truncation = True
            share = truncated.float().mean().item()
            self._loud_warning(
                f"{share:.0%} of this rollout's completions hit max_completion_length={budget} without ending, and "
                f"truncated_completion_reward={self.args.truncated_completion_reward!r} scores them "
                f"{self.truncation_value} ({self.truncation_rule})"
                + (
                    ", so no group has any reward spread: every advantage is 0 and this step trains nothing"
                    if flat
                    else ""
                )
                + ". Raise max_completion_length so responses can finish, or set truncated_completion_reward=None to "
                "keep the reward functions' scores for truncated responses."
            )
        self._flat_rollouts = self._flat_rollouts + 1 if flat else 0
        patience = self.args.no_signal_patience
        if patience and self._flat_rollouts >= patience and not self._warned_flat:
            self._warned_flat = True
            self._loud_warning(
                f"{self._flat_rollouts} consecutive rollouts without any group whose rewards differ: every advantage "
                "is 0, the loss is 0 and no parameter moves. Check the reward functions (do they ever disagree within "
                f"a group?), sample more diversely (num_generations={self.num_generations}, temperature), or, if most "
                f"responses are cut at max_completion_length={budget}, raise it or set "
                "truncated_completion_reward=None."
            )

    def _loud_warning(self, message: str) -> None:
        if self.accelerator.is_main_process:
            logger.warning(message)
            warnings.warn(message, NoLearningSignalWarning, stacklevel=3)

    # ------------------------------------------------------------------ loss
    def _compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """TRL's loss for the derived `loss_type`; Dr. GRPO's constant is `loss_normalizer` (default: the budget).

        TRL's `dr_grpo`/`grpo` reduce as :func:`objective.aggregate_token_losses`; the deltas: a constant other
        than the budget, swapped in for the call, and a graded length term (0 < alpha < 1) on `dr_grpo`'s path.
        """
        alpha, normalizer = self.args.length_weight_exponent, self.args.loss_normalizer
        if alpha is not None and 0.0 < alpha < 1.0:
            mask = inputs["completion_mask"] * inputs.get("tool_mask", 1)  # the tokens TRL's loss sums
            scaled = graded_advantages(inputs["advantages"], mask, alpha, normalizer)
            inputs = {**inputs, "advantages": scaled}
        if self.loss_type != "dr_grpo" or self.args.loss_normalizer == self.max_completion_length:
            return super()._compute_loss(model, inputs)
        budget = self.max_completion_length
        self.max_completion_length = self.args.loss_normalizer
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self.max_completion_length = budget


def is_answer_reward(reward_func: Any) -> bool:
    """Whether `reward_func` checks a final answer (declares ``answer_reward = True``, as ``MathReward`` does)."""
    return getattr(reward_func, "answer_reward", False) is True


def truncation_rule(setting: float | str | None, reward_funcs: list[Any]) -> tuple[list[bool], float]:
    """Which reward functions' scores a truncated response gets replaced, and by what value.

    ``"auto"``: the answer-checking ones, by 0 (the paper's rule: a response cut at the budget has no final
    answer); a number: all of them, by that number; ``None``: none.
    """
    if setting is None:
        return [False] * len(reward_funcs), 0.0
    if setting == AUTO:
        return [is_answer_reward(f) for f in reward_funcs], 0.0
    return [True] * len(reward_funcs), float(setting)


def describe_truncation_rule(
    setting: float | str | None, columns: list[bool], value: float, names: list[str]
) -> str:
    """One line for logs and the model card: what a response cut at the budget scores."""
    scored = [name for name, on in zip(names, columns, strict=True) if on]
    kept = [name for name, on in zip(names, columns, strict=True) if not on]
    parts = [f"{value:g} from {', '.join(scored)}"] if scored else []
    parts += [f"scores kept from {', '.join(kept)}"] if kept else []
    return f"truncated_completion_reward={setting!r}: " + "; ".join(parts)


def zero_spread_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """One boolean per group: all its (scorable) rewards are equal, so all its Dr. GRPO advantages are 0."""
    grouped = rewards.view(-1, group_size)
    scored = ~torch.isnan(grouped)
    high = torch.where(scored, grouped, -torch.inf).amax(1)
    low = torch.where(scored, grouped, torch.inf).amin(1)
    return ~(high > low)
