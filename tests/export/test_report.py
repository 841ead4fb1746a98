"""export/report.py: how the export report writes its figures."""

from __future__ import annotations

from export.report import (
    _percentile_rows,
    _precision_rows,
    _size,
    _speedup_sentence,
    signed_points,
    times,
)


def test_signed_points_never_read_minus_zero() -> None:
    assert [signed_points(v) for v in (-0.0, -0.001, 0.126, -1.5)] == [
        "+0.00",
        "+0.00",
        "+0.13",
        "-1.50",
    ]


def test_a_speedup_far_below_one_is_not_shown_as_zero() -> None:
    assert [times(v) for v in (2.871, 0.1, 0.0048)] == ["2.87×", "0.10×", "0.0048×"]


def test_a_speedup_resting_on_a_noisy_timing_is_marked_as_in_the_terminal() -> None:
    def result(model: str, cv_by_batch: dict[str, float]) -> dict:
        latency = {batch: {"p50_ms": 1.0, "cv": cv} for batch, cv in cv_by_batch.items()}
        return {"model": model, "backend": "onnxruntime", "precision": "fp32", "latency": latency}

    payload = {
        "speedup": {"onnxruntime": {"1": 2.5, "64": 3.0}},
        "results": [result("teacher", {"1": 0.4, "64": 0.01}), result("student", {"1": 0.02})],
    }
    assert _speedup_sentence(payload) == (
        "Student speedup over the teacher (p50, fp32): onnxruntime **2.50×** at batch 1 "
        "(noisy timing), **3.00×** at batch 64"
    )


def test_a_reduced_precision_speedup_resting_on_a_noisy_timing_is_marked() -> None:
    row = {
        "model": "student",
        "backend": "onnxruntime",
        "precision": "int8",
        "accuracy": 98.0,
        "fp32_accuracy": 98.5,
        "accuracy_drop": 0.5,
        "top1_agreement": 99.0,
        "speedup": {"1": 1.25, "64": 1.5},
        "noisy_speedups": ["1"],
        "size_ratio": 3.5,
    }
    payload = {"precision_comparison": [row], "settings": {"batch_sizes": [1, 64]}}
    _, (cells,) = _precision_rows(payload)
    assert cells[-3:] == ["1.25× (noisy timing)", "1.50×", "3.5×"]


def test_sizes_are_in_binary_units_named_as_such() -> None:
    assert [_size(n) for n in (None, 900, 315_167, 1_165_656)] == [
        "—",
        "900 B",
        "307.8 KiB",
        "1.1 MiB",
    ]


def test_the_percentile_table_does_not_show_a_noisy_cv_as_the_bar() -> None:
    timing = {"p50_ms": 1.0, "p90_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0}
    latency = {"64": {**timing, "cv": 0.1504, "throughput_ips": 64_000.0, "runs": 50}}
    result = {"model": "teacher", "backend": "onnxruntime", "precision": "fp32"}
    _, (row,) = _percentile_rows({"results": [{**result, "latency": latency}]})
    assert row[9] == "0.1504"  # "0.150" would read as the bar too
