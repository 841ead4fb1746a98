"""export/report.py: how the export report writes its figures."""

from __future__ import annotations

from export.report import signed_points, times


def test_signed_points_never_read_minus_zero() -> None:
    assert [signed_points(v) for v in (-0.0, -0.001, 0.126, -1.5)] == [
        "+0.00",
        "+0.00",
        "+0.13",
        "-1.50",
    ]


def test_a_speedup_far_below_one_is_not_shown_as_zero() -> None:
    assert [times(v) for v in (2.871, 0.1, 0.0048)] == ["2.87×", "0.10×", "0.0048×"]
