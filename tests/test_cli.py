"""compressor/cli.py helpers that shape what the user reads."""

from __future__ import annotations

import pytest

from compressor.cli import _signed
from tests.cli_helpers import run_cli
from tests.export.helpers import one_error_line


def test_signed_points_never_read_minus_zero() -> None:
    assert [_signed(v) for v in (-0.0, -0.001, 0.126, -1.5)] == ["+0.00", "+0.00", "+0.13", "-1.50"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["export", "runs/x", "--runs", "abc"],
            "error: Invalid value for '--runs': Input should be a valid integer, unable to parse "
            "string as an integer; see `compress export --help`",
        ),
        (["export"], "error: Missing argument 'run'; see `compress export --help`"),
        (["nosuch"], "error: No such command 'nosuch'; see `compress --help`"),
        (["gate", "runs/x", "--max-drop"], "error: Option '--max-drop' requires an argument"),
        (["recipe", "validate", "a.yaml", "--bogus"], "error: No such option: --bogus"),
    ],
)
def test_a_usage_error_is_one_error_line(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped flag is bad input like any other: exit 2, one line, no usage text or panel."""
    line = one_error_line(run_cli(capsys, *args))
    assert line.startswith(expected), line


def test_a_group_without_a_command_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "recipe")
    assert result.code == 2
    assert "validate" in result.stdout + result.stderr
    assert "error:" not in result.stdout + result.stderr


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "export", "--help").code == 0
    result = run_cli(capsys, "--version")
    assert result.code == 0
    assert result.stdout.startswith("compressor ")
