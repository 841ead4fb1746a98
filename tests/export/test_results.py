"""The tables an export report derives from its measurements: speedups, reduced precision
against fp32, warnings. Built from hand-made rows, so each figure is known in advance."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.recipe import ExportConfig
from export.latency import Latency, spread_text
from export.results import (
    ExportReport,
    Result,
    noisy_speedups,
    parity_failures,
    precision_comparison,
    result_warnings,
    slower_precision_warnings,
    speedups,
)
from export.validate import Parity


def _latency(batch: int, p50_ms: float, spread: float = 0.01) -> Latency:
    """A timing whose interquartile range is `spread` of its p50."""
    iqr_ms, throughput = spread * p50_ms, batch / p50_ms * 1e3
    return Latency(batch, p50_ms, p50_ms, p50_ms, p50_ms, p50_ms, iqr_ms, 0.3, throughput, 30)


def _row(
    model: str,
    backend: str,
    precision: str,
    p50_ms: dict[int, float],
    accuracy: float = 90.0,
    size: int | None = 1000,
    parity: Parity | None = None,
    spread: float = 0.01,
) -> Result:
    return Result(
        model=model,
        backend=backend,
        precision=precision,
        device="cpu",
        file=f"export/{model}.onnx",
        size_bytes=size,
        sha256=None,
        accuracy=accuracy,
        parity=parity,
        latency={batch: _latency(batch, ms, spread) for batch, ms in p50_ms.items()},
    )


def test_speedup_is_teacher_over_student_per_backend_and_batch_fp32_only() -> None:
    rows = [
        _row("student", "onnxruntime", "fp32", {1: 0.5, 64: 10.0}),
        _row("teacher", "onnxruntime", "fp32", {1: 1.5, 64: 40.0}),
        _row("student", "onnxruntime", "int8", {1: 0.1, 64: 1.0}),  # not a teacher/student pair
        _row("student", "pytorch", "fp32", {1: 2.0}),  # no teacher on this backend: no entry
    ]
    assert speedups(rows) == {"onnxruntime": {1: 3.0, 64: 4.0}}


def test_a_speedup_is_marked_noisy_where_either_timing_behind_it_was() -> None:
    teacher = _row("teacher", "onnxruntime", "fp32", {1: 1.5, 64: 40.0})
    teacher.latency[64] = _latency(64, 40.0, spread=0.5)
    rows = [
        _row("student", "onnxruntime", "fp32", {1: 0.5, 64: 10.0}),
        teacher,
        _row("student", "onnxruntime", "int8", {1: 0.1}, spread=0.5),  # not behind a speedup
        _row("student", "pytorch", "fp32", {1: 2.0}, spread=0.5),
        _row("teacher", "pytorch", "fp32", {1: 4.0}),
    ]
    assert noisy_speedups(rows) == {"onnxruntime": {64}, "pytorch": {1}}


def test_a_reduced_precision_row_is_compared_with_fp32_on_its_own_backend() -> None:
    rows = [
        _row("student", "onnxruntime", "fp32", {1: 0.4, 64: 16.0}, accuracy=70.0, size=400),
        _row("student", "pytorch", "fp32", {1: 4.0}, accuracy=71.0, size=800),
        _row(
            "student",
            "onnxruntime",
            "int8",
            {1: 0.2, 64: 10.0},
            accuracy=69.5,
            size=100,
            parity=Parity(0.3, 0.01, 98.25, None, 97.0, True),
        ),
    ]
    (row,) = precision_comparison(rows)
    assert row["backend"] == "onnxruntime" and row["precision"] == "int8"
    assert row["fp32_accuracy"] == 70.0 and row["accuracy_drop"] == pytest.approx(0.5)
    assert row["top1_agreement"] == 98.25
    assert row["size_ratio"] == 4.0
    assert row["speedup"] == {"1": 2.0, "64": 1.6}
    assert row["noisy_speedups"] == []


def test_a_reduced_precision_speedup_is_marked_noisy_where_either_timing_behind_it_was() -> None:
    fp32 = _row("student", "onnxruntime", "fp32", {1: 0.4, 8: 2.0, 64: 16.0})
    fp32.latency[8] = _latency(8, 2.0, spread=0.5)
    int8 = _row("student", "onnxruntime", "int8", {1: 0.2, 8: 1.0, 64: 10.0})
    int8.latency[64] = _latency(64, 10.0, spread=0.11)
    (row,) = precision_comparison([fp32, int8])
    assert row["noisy_speedups"] == ["8", "64"]


def test_a_row_without_its_fp32_base_on_that_backend_is_not_compared() -> None:
    rows = [
        _row("student", "pytorch", "fp32", {1: 1.0}),
        _row("student", "tensorrt", "fp16", {1: 0.1}),
    ]
    assert precision_comparison(rows) == []


def test_a_student_failing_parity_fails_and_a_teacher_or_noisy_timing_warns() -> None:
    failed = Parity(0.02, 0.001, 99.0, 1e-4, 99.9, False)
    rows = [
        _row("student", "onnxruntime", "fp32", {1: 0.5}, parity=failed),
        _row("teacher", "onnxruntime", "fp32", {1: 1.5, 64: 30.0}, spread=0.5, parity=failed),
    ]
    assert parity_failures(rows) == [
        "parity failed for student onnxruntime fp32: max |diff| 2.00e-02 (limit 0.0001), "
        "top-1 agreement 99.00 % (minimum 99.90 %)"
    ]
    parity, noisy = result_warnings(rows)
    assert parity.startswith("parity failed for teacher onnxruntime fp32:")
    assert noisy == (  # one line, not one per timing with the same advice each
        "noisy latency (interquartile range / median above 0.1) for teacher onnxruntime fp32 "
        "at batch 1 (0.50), teacher onnxruntime fp32 at batch 64 (0.50): other load on the "
        "machine; close other programs and export again (more runs steady the median, not "
        "the machine)"
    )
    passing = [_row("student", "onnxruntime", "fp32", {1: 0.5})]
    assert result_warnings(passing) == parity_failures(passing) == []


def test_a_failure_within_float32_rounding_of_large_logits_says_so() -> None:
    """An overconfident student's logits in the thousands differ by 4.6e-2 between ONNX
    Runtime and PyTorch: 4e-5 of their size, rounding, with every prediction agreeing."""
    rounding = Parity(0.046, 0.002, 100.0, 1e-4, 99.9, False, logit_scale=1100.0)
    [line] = parity_failures([_row("student", "onnxruntime", "fp32", {1: 0.5}, parity=rounding)])
    assert line.endswith(
        "(minimum 99.90 %); the logits reach 1.1e+03, and a difference of 4.2e-05 of that is "
        "float32 rounding: if agreement is what matters for this model, raise --max-abs-diff "
        "(export.max_abs_diff)"
    )
    # Not where the predictions disagree, nor where the difference is large for the logits.
    disagreeing = Parity(0.046, 0.002, 99.0, 1e-4, 99.9, False, logit_scale=1100.0)
    large = Parity(0.046, 0.002, 100.0, 1e-4, 99.9, False, logit_scale=12.0)
    for parity in (disagreeing, large):
        [line] = parity_failures([_row("student", "onnxruntime", "fp32", {1: 0.5}, parity=parity)])
        assert "rounding" not in line


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_logits_that_are_not_finite_are_named_as_the_failure(precision: str) -> None:
    """fp16 judges agreement only, and argmax of a row with an infinite logit can still agree:
    the line must name the overflow, not figures that read as a pass."""
    overflow = Parity(float("inf"), float("inf"), 99.5, None, 99.0, False, logit_scale=12.0)
    [line] = parity_failures([_row("student", "onnxruntime", precision, {1: 0.5}, parity=overflow)])
    assert line.startswith(
        f"parity failed for student onnxruntime {precision}: some of its logits are NaN or infinite"
    )
    assert ("float16 holds values up to 65,504" in line) == (precision == "fp16")
    assert "agreement" not in line


def test_a_noisy_spread_does_not_read_as_the_bar_it_is_above() -> None:
    assert [spread_text(spread) for spread in (0.4, 0.10059, 0.1000004, 0.099, 0.01)] == [
        "0.40",
        "0.101",
        "0.1001",
        "0.10",
        "0.01",
    ]


def test_a_reduced_precision_file_slower_than_fp32_at_every_steady_batch_is_warned_of() -> None:
    """INT8 on a CPU without VNNI, fp16 on most CPUs: the ratios sat in the table alone."""
    rows = precision_comparison(
        [
            _row("student", "onnxruntime", "fp32", {1: 0.25, 64: 15.5}),
            _row("student", "onnxruntime", "int8", {1: 0.35, 64: 20.2}),
            _row("teacher", "onnxruntime", "fp32", {1: 0.8, 64: 65.0}),
            _row("teacher", "onnxruntime", "int8", {1: 0.9, 64: 28.0}),  # faster at 64
        ]
    )
    assert slower_precision_warnings(rows) == [
        "student int8 is slower than fp32 in onnxruntime on this machine (0.71× at batch 1, "
        "0.77× at batch 64): keep the fp32 file for it"
    ]
    noisy = precision_comparison(
        [
            _row("student", "onnxruntime", "fp32", {1: 0.25}),
            _row("student", "onnxruntime", "int8", {1: 0.35}, spread=0.5),
        ]
    )
    assert slower_precision_warnings(noisy) == []  # a noisy ratio says nothing either way


def test_an_agreement_failure_of_a_reduced_precision_file_says_where_to_look() -> None:
    """A 70 % student agrees 97.6 % with fp32 at INT8, its accuracy unchanged: the failure
    points at the accuracies and at the bar to lower, not at the file."""
    failed = Parity(4.9, 0.3, 97.59, None, 98.0, False)
    [line] = parity_failures([_row("student", "onnxruntime", "int8", {1: 0.5}, parity=failed)])
    assert line == (
        "parity failed for student onnxruntime int8: top-1 agreement 97.59 % (minimum 98.00 %); "
        "a model with many low-margin predictions agrees less at int8 with its accuracy "
        "unchanged: compare the two accuracies in the reduced-precision table, and lower "
        "export.int8_min_agreement if accuracy is what matters"
    )


def test_the_verdict_is_what_the_exit_code_says() -> None:
    """exit 2 (incomplete) before exit 1 (failed), as the CLI checks them; no row validated
    (--no-onnx) is not a pass."""
    passed = Parity(1e-6, 1e-7, 100.0, 1e-4, 99.9, True)
    report = ExportReport(
        run=Path("runs/x"),
        recipe_sha256="0" * 64,
        export_section_sha256="0" * 64,
        student_sha256="0" * 64,
        dataset="digits",
        eval_samples=360,
        settings=ExportConfig(),
        host={},
        results=[_row("student", "pytorch", "fp32", {1: 1.0})],
    )
    assert report.verdict() == "unvalidated"
    report.results.append(_row("student", "onnxruntime", "fp32", {1: 0.5}, parity=passed))
    assert report.verdict() == "passed"
    report.failures = ["parity failed for student onnxruntime fp32: ..."]
    assert report.verdict() == "failed"
    report.problems = ["tensorrt: the engine could not be built"]
    assert report.verdict() == "incomplete"


def test_a_reduced_precision_student_is_compared_with_the_teacher_the_gate_judges_it_by() -> None:
    """`compress gate --precision int8` judged the INT8 student against the INT8 teacher (a
    given fp16 file against the fp32 one), a speedup no report showed."""
    rows = [
        _row("student", "onnxruntime", "fp32", {1: 0.4, 64: 16.0}),
        _row("student", "onnxruntime", "int8", {1: 0.2, 64: 8.0}),
        _row("student", "onnxruntime", "fp16", {1: 0.5, 64: 20.0}),
        _row("teacher", "onnxruntime", "fp32", {1: 1.0, 64: 40.0}),
        _row("teacher", "onnxruntime", "int8", {1: 0.6, 64: 20.0}, spread=0.5),
    ]
    int8, fp16, teacher_int8 = precision_comparison(rows)
    assert int8["teacher_precision"] == "int8"
    assert int8["teacher_speedup"] == {"1": pytest.approx(3.0), "64": pytest.approx(2.5)}
    assert int8["noisy_teacher_speedups"] == ["1", "64"]
    assert (fp16["teacher_precision"], fp16["teacher_speedup"]) == ("fp32", {"1": 2.0, "64": 2.0})
    assert fp16["noisy_teacher_speedups"] == []
    assert teacher_int8["teacher_speedup"] == {} and teacher_int8["teacher_precision"] is None
