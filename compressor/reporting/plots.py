"""Plots embedded in HTML reports as base64 PNG, so a report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

# Figure objects drawn straight to PNG, without pyplot: no display is needed, and the
# process's backend (a notebook's inline one) is left as the caller set it.
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

# One colour per model in every report, so the teacher is the same colour in report.html
# and export_report.html; other series take the rest of the palette in turn.
MODEL_COLORS = {"student": "#4C72B0", "teacher": "#DD8452"}
_OTHER_COLORS = ["#55A868", "#C44E52", "#8172B3", "#937860"]


def _colors(labels: Sequence[str]) -> list[str]:
    others = iter(_OTHER_COLORS * len(labels))
    return [MODEL_COLORS.get(label) or next(others) for label in labels]


def _png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def line_plot(
    title: str, x: Sequence[float], series: Mapping[str, Sequence[float]], ylabel: str
) -> str:
    """One line per series against a shared x axis (epochs); returns base64 PNG."""
    figure = Figure(figsize=(6, 3.4))
    axis = figure.subplots()
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
    figure = Figure(figsize=(5, 3.4))
    axis = figure.subplots()
    bars = axis.bar(labels, values, color=_colors(labels))
    axis.bar_label(bars, fmt="%.2f")
    axis.margins(y=0.12)  # room above the tallest bar for its value
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3, axis="y")
    return _png_base64(figure)


def grouped_bar_plot(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    ylabel: str,
    *,
    fmt: str = ".3g",
    log: bool = False,
) -> str:
    """Side-by-side bars per group, one colour per series (NaN: nothing drawn); base64 PNG.

    For comparisons such as student vs teacher on each backend, where a single bar series
    would put unlike things next to each other. `log` for quantities that span orders of
    magnitude across groups (eager PyTorch vs TensorRT latency): then each value is a point,
    as a bar's length on a log axis depends on where the axis starts and misstates ratios.
    The legend is drawn even for one series: it is what says whose values these are.
    """
    figure = Figure(figsize=(max(5.0, 1.3 * len(groups) + 1.5), 3.6))
    axis = figure.subplots()
    width = 0.8 / max(len(series), 1)
    for index, ((label, values), color) in enumerate(
        zip(series.items(), _colors(list(series)), strict=True)
    ):
        offset = (index - (len(series) - 1) / 2) * width
        positions = [position + offset for position in range(len(groups))]
        labels = [format(value, fmt) if value == value else "" for value in values]
        if log:
            axis.plot(positions, values, "o", label=label, color=color)
            for position, value, text in zip(positions, values, labels, strict=True):
                if text:
                    axis.annotate(
                        text,
                        (position, value),
                        xytext=(0, 5),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7,
                    )
        else:
            bars = axis.bar(positions, values, width, label=label, color=color)
            axis.bar_label(bars, labels=labels, fontsize=7)
    axis.set_xticks(range(len(groups)), groups, fontsize=8)
    axis.set_xlim(-0.6, len(groups) - 0.4)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    if log:
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(NullFormatter())  # else 6×10⁻¹ beside 0.1
    axis.margins(y=0.15)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=8)
    return _png_base64(figure)
