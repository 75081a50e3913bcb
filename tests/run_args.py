"""The shared settings of the tests' tiny CPU training runs."""

from __future__ import annotations

from typing import Any

CPU_RUN_DEFAULTS: dict[str, Any] = dict(
    use_cpu=True,
    bf16=False,
    report_to=[],
    logging_steps=1,
    save_strategy="no",
    seed=0,
)


def cpu_run_args(config_cls, output_dir, **overrides):
    """``config_cls`` (GRPOConfig, DrGRPOConfig) for a tiny seeded CPU run: no reports, no checkpoints, a log
    every step; ``overrides`` (the batch shape, steps, lengths, ...) go on top of these defaults."""
    return config_cls(output_dir=str(output_dir), **{**CPU_RUN_DEFAULTS, **overrides})
