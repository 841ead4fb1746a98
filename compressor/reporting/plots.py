"""Plots embedded in HTML reports as base64 PNG, so a report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display is needed
from matplotlib.ticker import FormatStrFormatter, MaxNLocator


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
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
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


def grouped_bar_plot(
    title: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    *,
    fmt: str = ".3g",
    log: bool = False,
) -> str:
    """Side-by-side bars per group, one colour per series (NaN: no bar); base64 PNG.

    For comparisons such as student vs teacher on each backend, where a single bar series
    would put unlike things next to each other. `log` for quantities that span orders of
    magnitude across groups (eager PyTorch vs TensorRT latency).
    """
    figure, axis = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 1.5), 3.6))
    width = 0.8 / max(len(series), 1)
    colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]
    for index, (label, values) in enumerate(series.items()):
        offset = (index - (len(series) - 1) / 2) * width
        positions = [position + offset for position in range(len(groups))]
        bars = axis.bar(positions, values, width, label=label, color=colors[index % len(colors)])
        labels = [format(value, fmt) if value == value else "" for value in values]
        axis.bar_label(bars, labels=labels, fontsize=7)
    axis.set_xticks(range(len(groups)), groups, fontsize=8)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    if log:
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axis.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        axis.legend(fontsize=8)
    return _png_base64(figure)
