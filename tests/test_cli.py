"""compressor/cli.py helpers that shape what the user reads."""

from __future__ import annotations

from compressor.cli import _signed


def test_signed_points_never_read_minus_zero() -> None:
    assert [_signed(v) for v in (-0.0, -0.001, 0.126, -1.5)] == ["+0.00", "+0.00", "+0.13", "-1.50"]
