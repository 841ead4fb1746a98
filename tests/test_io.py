"""Atomic writes of the run's records."""

from __future__ import annotations

import json
from pathlib import Path

from compressor.io import write_json


def test_json_is_strict_non_finite_numbers_become_null(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json(path, {"parity": {"max_abs_diff": float("inf"), "top1": [float("nan"), 1.5]}})
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} in {text}")

    assert json.loads(text, parse_constant=strict) == {
        "parity": {"max_abs_diff": None, "top1": [None, 1.5]}
    }
