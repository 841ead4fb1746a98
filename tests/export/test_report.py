"""export/report.py: how the export report writes its figures."""

from __future__ import annotations

from export.report import signed_points


def test_signed_points_never_read_minus_zero() -> None:
    assert [signed_points(v) for v in (-0.0, -0.001, 0.126, -1.5)] == [
        "+0.00",
        "+0.00",
        "+0.13",
        "-1.50",
    ]
