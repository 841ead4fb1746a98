"""A rule's verdict as the table, the JSON summary and the JUnit file read it."""

from __future__ import annotations

from pathlib import Path

from compressor.gate.verdict import GateResult, RuleResult, judge


def test_a_measurement_rounded_through_float32_passes_its_decimal_bar() -> None:
    assert judge("export_agreement", 99.4999993, 99.5, "").status == "PASS"
    assert judge("export_agreement", 99.49, 99.5, "").status == "FAIL"


def test_the_summary_line_gives_the_numbers_before_how_they_were_got() -> None:
    failed = judge("speedup", 1.5, 2.0, "onnxruntime batch 64", unit="×")
    assert failed.summary == "speedup: FAIL: measured 1.50×, needs ≥ 2.00× (onnxruntime batch 64)"
    skipped = RuleResult("speedup", None, None, "SKIP", "min_speedup is not set", "×")
    assert skipped.summary == "speedup: skipped: min_speedup is not set"
    assert (skipped.measured_text, skipped.threshold_text) == ("—", "—")
    shown = RuleResult("speedup", 2.5, None, "SKIP", "not judged", "×")
    assert shown.summary == "speedup: skipped: measured 2.50× (not judged)"


def test_skipped_rules_do_not_fail_the_gate_and_failed_ones_are_listed() -> None:
    passed = judge("student_accuracy", 91.0, 90.0, "")
    skipped = RuleResult("speedup", None, None, "SKIP", "min_speedup is not set", "×")
    failed = judge("export_accuracy", 80.0, 90.0, "")
    assert GateResult(Path("run"), "onnxruntime", "fp32", [passed, skipped], 0.1).passed
    gate = GateResult(Path("run"), "onnxruntime", "fp32", [passed, skipped, failed], 0.1)
    assert not gate.passed and gate.failed == [failed]


def test_a_failure_shows_as_many_decimals_as_it_takes_to_see_it() -> None:
    """98.6075 % against a bar of 98.61 % read "98.61 % ≥ 98.61 % FAIL"."""
    failed = judge("student_accuracy", 98.6075, 98.61, "")
    assert (failed.measured_text, failed.threshold_text) == ("98.608 %", "≥ 98.610 %")
    one_in_50k = judge("export_agreement", 100 - 100 / 50_000, 100.0, "")
    assert (one_in_50k.measured_text, one_in_50k.threshold_text) == ("99.998 %", "≥ 100.000 %")
    assert judge("speedup", 2.0004, 2.0, "", unit="×").measured_text == "2.00×"  # a pass


def test_a_threshold_shows_every_decimal_it_was_given() -> None:
    """A bar of 0.995 read "≥ 0.99 %" (rounded), and 1.125× read "≥ 1.12×"."""
    agreement = judge("export_agreement", 100.0, 0.995, "")
    assert (agreement.measured_text, agreement.threshold_text) == ("100.000 %", "≥ 0.995 %")
    speedup = judge("speedup", 1.5, 1.125, "", unit="×")
    assert speedup.threshold_text == "≥ 1.125×"
    assert judge("student_accuracy", 98.7, 98.5, "").threshold_text == "≥ 98.50 %"
    teacher_less_one = 100 * 356 / 360 - 1  # from a measurement: not typed, two decimals
    assert judge("student_accuracy", 98.7, teacher_less_one, "").threshold_text == "≥ 97.89 %"
