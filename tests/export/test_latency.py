"""Latency statistics: percentiles, spread, throughput, and timing a callable."""

from __future__ import annotations

import numpy as np
import pytest

from export import measure_latency
from export.latency import summarize


def test_latency_percentiles_mean_spread_and_throughput() -> None:
    seconds = np.arange(1, 101) / 1000.0  # 1..100 ms
    latency = summarize(seconds, batch=8)
    assert latency.p50_ms == pytest.approx(50.5)
    assert latency.p90_ms == pytest.approx(90.1)
    assert latency.p99_ms == pytest.approx(99.01)
    assert latency.mean_ms == pytest.approx(50.5)
    assert latency.iqr_ms == pytest.approx(75.25 - 25.75)
    assert latency.spread == pytest.approx(49.5 / 50.5)
    assert latency.cv == pytest.approx(np.std(np.arange(1, 101)) / 50.5)
    assert latency.throughput_ips == pytest.approx(8 * 1000 / 50.5)
    assert latency.runs == 100
    assert latency.noisy  # 1..100 ms is anything but steady
    assert not summarize(np.full(10, 0.002), batch=1).noisy


def test_the_coefficient_of_variation_is_relative_to_the_mean_not_the_median() -> None:
    """CV = std / mean. Nine runs of 1 ms and one of 10 ms: std 2.7, mean 1.9, p50 1; over
    the median the CV read 2.7, and only skewed timings tell the two apart."""
    latency = summarize(np.array([1.0] * 9 + [10.0]) / 1000.0, batch=1)
    assert latency.p50_ms == pytest.approx(1.0)
    assert latency.mean_ms == pytest.approx(1.9)
    assert latency.cv == pytest.approx(2.7 / 1.9)


def test_a_steady_median_among_a_few_preempted_calls_is_not_noisy() -> None:
    """49 calls of 1 ms and one another process held up to 10 ms: the median is exact and
    the sustained throughput pays for the outlier, but a CV of 1.07 called the timing noisy,
    as it did nearly every timing on a loaded machine, and more runs could not lower it."""
    latency = summarize(np.array([1.0] * 49 + [10.0]) / 1000.0, batch=1)
    assert latency.p50_ms == pytest.approx(1.0)
    assert latency.cv > 1
    assert latency.spread == 0.0
    assert not latency.noisy


def test_a_median_whose_middle_half_spreads_over_a_tenth_of_it_is_noisy() -> None:
    """The middle half of the calls from 0.9 to 1.15 ms: the median moves with the load."""
    latency = summarize(np.linspace(0.8, 1.3, 101) / 1000.0, batch=1)
    assert latency.spread == pytest.approx(0.25 / 1.05)
    assert latency.noisy
    steadier = summarize(np.linspace(0.95, 1.05, 101) / 1000.0, batch=1)
    assert steadier.spread == pytest.approx(0.05 / 1.0)
    assert not steadier.noisy


def test_measure_latency_times_each_run() -> None:
    calls = []
    latency = measure_latency(
        lambda x: calls.append(len(x)) or x, np.zeros((4, 3)), warmup=2, runs=5
    )
    assert calls == [4] * 7
    assert latency.runs == 5 and latency.batch == 4 and latency.p50_ms > 0
