"""Latency of one backend at one batch size: warm-up, timed runs, percentiles. numpy only.

What is timed is `infer(batch)`: host numpy in → host numpy out, the same for every backend
(PyTorch includes its device copies, ONNX Runtime and TensorRT theirs), so the figures
compare what a caller of the deployed model waits for. Warm-up runs let allocators, cuDNN/
TensorRT tactic choices and CPU caches settle before anything is recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from export.validate import Infer

# Above this spread (interquartile range / median) the p50 is not trustworthy: other
# processes, CPU frequency scaling or a shared GPU were interfering. torch.utils.benchmark's
# bar. The coefficient of variation judged it before: a few calls another process pre-empted
# blew it up (CV 3.7 with an IQR of a tenth of the median) while the median held, every
# timing read as noisy, and more runs could not lower it.
NOISY_SPREAD = 0.1


def spread_text(spread: float) -> str:
    """A spread as a noisy timing is told: two decimals, or as many more as it takes not to
    read as the bar it is above (0.1006 read "0.10", above 0.1). A value a hair above the bar
    is rounded up at four decimals (0.1000004 reads "0.1001"), since the line it is on says it
    is above the bar."""
    decimals = 2
    while decimals < 4 and round(spread, decimals) <= NOISY_SPREAD < spread:
        decimals += 1
    if round(spread, decimals) <= NOISY_SPREAD < spread:
        return f"{math.ceil(spread * 10**decimals) / 10**decimals:.{decimals}f}"
    return f"{spread:.{decimals}f}"


def spread_of(timing: Mapping[str, Any]) -> float | None:
    """The spread of a timing as a report holds it; None for a report from before the
    interquartile range was kept, whose timings are not judged."""
    iqr = timing.get("iqr_ms")
    return None if iqr is None else iqr / timing["p50_ms"]


def is_noisy(spread: float | None) -> bool:
    return spread is not None and spread > NOISY_SPREAD


@dataclass(frozen=True)
class Latency:
    batch: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    iqr_ms: float  # p75 - p25: how far the median can be trusted (spread)
    cv: float  # standard deviation / mean of the timed runs: what the outliers cost the mean
    throughput_ips: float  # images per second at the mean latency: sustained, outliers and all
    runs: int

    @property
    def spread(self) -> float:
        return self.iqr_ms / self.p50_ms

    @property
    def noisy(self) -> bool:
        return is_noisy(self.spread)

    def to_json(self) -> dict[str, Any]:
        return {
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "iqr_ms": self.iqr_ms,
            "cv": self.cv,
            "throughput_ips": self.throughput_ips,
            "runs": self.runs,
        }


def summarize(seconds: np.ndarray, batch: int) -> Latency:
    """Percentiles and spread of per-run wall times (seconds) for a batch of `batch` images."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0 or not np.all(ms > 0):
        raise ValueError("latency needs at least one positive timing")
    p25, p50, p75, p90, p95, p99 = np.percentile(ms, [25, 50, 75, 90, 95, 99])
    mean = float(ms.mean())
    return Latency(
        batch=batch,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=mean,
        iqr_ms=float(p75 - p25),
        cv=float(ms.std() / mean),
        throughput_ips=batch * 1e3 / mean,
        runs=int(ms.size),
    )


def measure_latency(infer: Infer, batch: np.ndarray, *, warmup: int, runs: int) -> Latency:
    """Call `infer(batch)` `warmup` times untimed, then `runs` times timed one by one."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        infer(batch)
    seconds = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        infer(batch)
        seconds[index] = time.perf_counter() - start
    return summarize(seconds, len(batch))
