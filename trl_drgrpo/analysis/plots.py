"""Shared matplotlib helpers (Agg backend, PNG files) for the analysis commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def panels(count: int, width: float = 4.6, height: float = 3.4, cols: int | None = None):
    """A figure with ``count`` axes on a grid (at most ``cols`` per row); returns ``(fig, axes)``."""
    cols = min(count, cols or count)
    rows = -(-count // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def save(fig, path: str | Path, title: str | None = None, dpi: int = 110) -> str:
    """Save ``fig`` as a PNG at ``path`` and close it; return the path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def grouped_bars(
    ax,
    categories: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    ylabel: str = "",
    percent: bool = True,
) -> None:
    """Bars for each category (x) and each series (colour); missing values are left out."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (n - 1) / 2) * width for j, v in enumerate(values) if v is not None]
        ys = [(100 * v if percent else v) for v in values if v is not None]
        ax.bar(xs, ys, width=width, label=name)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=20 if max(map(len, categories), default=0) > 8 else 0, ha="right")
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    if percent:  # from 0; all-zero bars on a readable scale
        ax.set_ylim(0, max(ax.get_ylim()[1], 5))
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:  # outside the axes: never over a bar
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def short(label: str, limit: int = 40) -> str:
    """``label`` cut to ``limit`` characters for legends."""
    return label if len(label) <= limit else "…" + label[-(limit - 1) :]
