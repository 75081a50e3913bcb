"""``DrGRPOTrainer``: TRL's ``GRPOTrainer`` with the advantage and the loss aggregation of Dr. GRPO.

Two overrides carry the paper; everything else (generation with vLLM or transformers, PEFT, gradient
accumulation, ``steps_per_generation``, ``num_iterations``, several weighted reward functions) is TRL's:

* ``_generate_and_score_completions``: advantages come from :func:`objective.group_advantages`;
* ``_compute_loss``: token losses are reduced by :func:`objective.aggregate_token_losses`.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from .config import DrGRPOConfig
from .objective import aggregate_token_losses, clipped_surrogate, group_advantages, k3_kl

# Extra model inputs (vision-language models) that TRL stores in the batch and forwards to the model.
_FORWARD_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


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


class DrGRPOTrainer(GRPOTrainer):
    """Drop-in replacement for ``trl.GRPOTrainer`` that trains with Dr. GRPO (or any of the paper's ablations).

    Use it exactly like ``GRPOTrainer`` with a :class:`DrGRPOConfig`. Besides TRL's metrics it logs
    ``drgrpo/correct_mean_length``, ``drgrpo/incorrect_mean_length``, ``drgrpo/truncated_fraction`` and
    ``drgrpo/zero_std_group_fraction``. Callbacks with a ``bind(trainer)`` method are bound to the trainer.
    """

    _tag_names = ["trl", "grpo", "dr-grpo", "trl_drgrpo"]
    _name = "Dr. GRPO"

    def __init__(self, model: Any, reward_funcs: Any = None, args: DrGRPOConfig | None = None, **kwargs: Any):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = DrGRPOConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-DrGRPO")
        if not isinstance(args, DrGRPOConfig):
            raise TypeError(
                f"DrGRPOTrainer needs a DrGRPOConfig, got {type(args).__name__}: "
                "replace `GRPOConfig(...)` by `DrGRPOConfig(...)` (same arguments)"
            )
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        self._rollout: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if args.extra_eos_tokens:
            self._add_eos_tokens(args.extra_eos_tokens)
        if args.stop_strings and self.use_vllm:
            kwargs = self.vllm_generation.generation_kwargs
            kwargs["stop"] = [*(kwargs.get("stop") or []), *args.stop_strings]
            kwargs["include_stop_str_in_output"] = True
        for callback in self.callback_handler.callbacks:
            if callable(getattr(callback, "bind", None)):
                callback.bind(self)

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
        eos = set(self.eos_token_ids)
        budget = self.max_completion_length
        local_truncated = [
            len(ids) >= budget and (not ids or ids[-1] not in eos) for ids in completion_ids_list
        ]
        truncated = self.accelerator.gather(torch.tensor(local_truncated, device=device))
        lengths = self.accelerator.gather(
            torch.tensor([len(ids) for ids in completion_ids_list], device=device)
        )
        if self.args.truncated_completion_reward is not None:
            # The paper gives a response that exhausts the budget without finishing zero reward.
            rewards_per_func[truncated] = self.args.truncated_completion_reward
        self._rollout = (rewards_per_func, truncated, lengths)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, truncated, lengths = self._rollout
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = self._total_reward(rewards_per_func)
        advantages = group_advantages(rewards, group_size, std_normalization=self.args.std_normalization)
        local = output["completion_ids"].size(0)
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local]
        self._log_rollout_metrics(mode, rewards, truncated, lengths, group_size)
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
        grouped = torch.nan_to_num(rewards, nan=0.0).view(-1, group_size)
        metrics["drgrpo/zero_std_group_fraction"].append(
            (grouped.amax(1) == grouped.amin(1)).float().mean().item()
        )

    # ------------------------------------------------------------------ loss
    def _compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        per_token_logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            completion_ids.size(1),
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            **{key: inputs.get(key) for key in _FORWARD_KEYS},
        )
        # With one optimisation pass per rollout the behaviour policy is the current one (ratio 1, gradient kept).
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:
            old_per_token_logps = per_token_logps.detach()
        per_token_loss, ratio = clipped_surrogate(
            per_token_logps,
            old_per_token_logps,
            inputs["advantages"],
            self.epsilon_low,
            self.epsilon_high,
            self.args.delta,
        )
        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        if self.beta != 0.0:
            per_token_kl = k3_kl(per_token_logps, inputs["ref_per_token_logps"])
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * ratio
            per_token_loss = per_token_loss + self.beta * per_token_kl

        loss = aggregate_token_losses(
            per_token_loss, mask, self.args.length_normalization, normalizer=self.args.loss_normalizer
        )
        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        loss = loss / accumulation
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss / accumulation

        self._log_loss_metrics(mode, mask, entropies, ratio, inputs["advantages"])
        if self.beta != 0.0:
            self._metrics[mode]["kl"].append(self._global_masked_mean(per_token_kl, mask))
        return loss

    @torch.no_grad()
    def _log_loss_metrics(
        self,
        mode: str,
        mask: torch.Tensor,
        entropies: torch.Tensor,
        ratio: torch.Tensor,
        advantages: torch.Tensor,
    ) -> None:
        metrics = self._metrics[mode]
        metrics["entropy"].append(self._global_masked_mean(entropies, mask))
        advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
        low = (ratio < 1 - self.epsilon_low) & (advantages < 0)
        high = (ratio > 1 + self.epsilon_high) & (advantages > 0)
        metrics["clip_ratio/low_mean"].append(self._global_masked_mean(low.float(), mask))
        metrics["clip_ratio/high_mean"].append(self._global_masked_mean(high.float(), mask))
        metrics["clip_ratio/region_mean"].append(self._global_masked_mean((low | high).float(), mask))

    def _global_masked_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        """Token-weighted mean over all processes."""
        local = torch.stack([(values * mask).sum(), mask.sum().float()]).detach()
        total = self.accelerator.reduce(local, reduction="sum")
        return (total[0] / total[1].clamp(min=1.0)).item()
