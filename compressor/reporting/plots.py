"""Plots embedded in HTML reports as base64 PNG, so a report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display is needed


def _png_base64(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def line_plot(
    title: str, x: Sequence[float], series: dict[str, Sequence[float]], ylabel: str
) -> str:
    """One line per series against a shared x axis (epochs); returns base64 PNG."""
    figure, axis = plt.subplots(figsize=(6, 3.4))
    for label, values in series.items():
        axis.plot(x, values, marker="o", markersize=3, label=label)
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if len(series) > 1:
        axis.legend()
    return _png_base64(figure)


def bar_plot(title: str, labels: Sequence[str], values: Sequence[float], ylabel: str) -> str:
    """Bars with their values written on top; returns base64 PNG."""
    figure, axis = plt.subplots(figsize=(5, 3.4))
    bars = axis.bar(
        labels, values, color=["#4C72B0", "#DD8452", "#55A868", "#C44E52"][: len(values)]
    )
    axis.bar_label(bars, fmt="%.2f")
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3, axis="y")
    return _png_base64(figure)
