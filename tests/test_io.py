"""Atomic writes of the run's records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.io import write_json, write_text


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


@pytest.mark.parametrize("inside", ["x.json", "sub/x.json"])
def test_a_file_where_a_folder_should_be_is_named(tmp_path: Path, inside: str) -> None:
    """mkdir says 'File exists' (or 'Not a directory') without naming the file in the way;
    `compress recipe schema -o r20.yaml/x.json` printed just that."""
    (tmp_path / "r20.yaml").write_text("student: {arch: resnet20}\n")
    with pytest.raises(NotADirectoryError) as caught:
        write_text(tmp_path / "r20.yaml" / inside, "{}")
    assert caught.value.strerror == f"{tmp_path / 'r20.yaml'} is a file, not a folder"
    assert (tmp_path / "r20.yaml").read_text() == "student: {arch: resnet20}\n"
