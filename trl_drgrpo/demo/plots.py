"""Training curves (reward, response lengths, group statistics) from a trainer's ``log_history``.

``plot_training_curves("outputs/demo/drgrpo/checkpoint-30/trainer_state.json", "curves.png")`` draws the
metrics that are present among ``REWARD_METRICS``, ``LENGTH_METRICS`` and ``FRACTION_METRICS``: the
paper's Figure 5-style view of reward and of the lengths of correct and incorrect responses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..analysis.dynamics import moving_average  # noqa: E402  (one trailing mean for every plot)
from ..analysis.plots import save  # noqa: E402

REWARD_METRICS = ("reward",)
LENGTH_METRICS = ("completions/mean_length", "drgrpo/correct_mean_length", "drgrpo/incorrect_mean_length")
FRACTION_METRICS = ("drgrpo/truncated_fraction", "drgrpo/zero_std_group_fraction")
_LABELS = {
    "reward": "mean reward",
    "completions/mean_length": "all responses",
    "drgrpo/correct_mean_length": "correct responses",
    "drgrpo/incorrect_mean_length": "incorrect responses",
    "drgrpo/truncated_fraction": "truncated",
    "drgrpo/zero_std_group_fraction": "groups with equal rewards",
}


def load_log_history(source: str | os.PathLike | Sequence[Mapping]) -> list[dict]:
    """``log_history`` from a ``trainer_state.json`` path, a folder holding one (or checkpoints), or a list."""
    if not isinstance(source, (str, os.PathLike)):
        return [dict(entry) for entry in source]
    path = Path(source)
    if path.is_dir():
        candidates = [
            path / "trainer_state.json",
            *sorted(path.glob("checkpoint-*/trainer_state.json"), key=_step_of),
        ]
        existing = [p for p in candidates if p.is_file()]
        if not existing:
            raise FileNotFoundError(f"no trainer_state.json in {path} or its checkpoint-* folders")
        path = existing[-1]
    state = json.loads(path.read_text())
    if "log_history" not in state:
        raise ValueError(f"{path} has no 'log_history' (expected a transformers trainer_state.json)")
    return state["log_history"]


def _step_of(path: Path) -> int:
    suffix = path.parent.name.removeprefix("checkpoint-")
    return int(suffix) if suffix.isdigit() else -1


def metric_series(log_history: Sequence[Mapping], name: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of ``name`` over the training log entries that have it."""
    points = [
        (e["step"], float(e[name])) for e in log_history if name in e and "step" in e and e[name] is not None
    ]
    return [s for s, _ in points], [v for _, v in points]


def plot_training_curves(
    source: str | os.PathLike | Sequence[Mapping],
    output_path: str | os.PathLike,
    *,
    title: str | None = None,
) -> str:
    """Plot reward, response lengths and group fractions (those logged) into a PNG; return its path."""
    history = load_log_history(source)
    groups = [
        ("Reward", REWARD_METRICS, "reward"),
        ("Response length", LENGTH_METRICS, "tokens"),
        ("Fractions", FRACTION_METRICS, "fraction"),
    ]
    panels = [(t, [m for m in names if metric_series(history, m)[0]], y) for t, names, y in groups]
    panels = [p for p in panels if p[1]]
    if not panels:
        wanted = [m for _, names, _ in groups for m in names]
        raise ValueError(f"log_history has none of the metrics {wanted}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (panel_title, names, ylabel) in zip(axes[0], panels, strict=True):
        lines = 0
        for name in names:
            steps, values = metric_series(history, name)
            ax.plot(steps, values, marker="o", markersize=2.5, linewidth=1.2, label=_LABELS.get(name, name))
            lines += 1
            if name in REWARD_METRICS and len(values) >= 10:
                window = max(2, len(values) // 10)
                ax.plot(
                    steps,
                    moving_average(values, window),
                    linewidth=2.2,
                    label=f"moving average ({window} steps)",
                )
                lines += 1
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if lines > 1:
            ax.legend(fontsize=8)
    return save(fig, output_path, title, dpi=120)
