"""compressor/cli.py helpers that shape what the user reads."""

from __future__ import annotations

from pathlib import Path

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
        (
            ["distil", "r.yaml"],
            "error: No such command 'distil'. Did you mean 'distill'? See `compress --help`",
        ),
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
    train = run_cli(capsys, "train", "--help")
    # A flag takes no value: no type label beside it, as if it did.
    assert "--overwrite  Replace an existing run" in train.stdout and "<bool>" not in train.stdout
    listing = run_cli(capsys, "--help").stdout
    assert "export      Export to ONNX (+ TensorRT), validate and time.\n" in listing
    commands = listing[listing.index("Commands:") :]
    assert "..." not in commands.replace("(AMKD, KD, ...)", "")  # no summary cut short
    result = run_cli(capsys, "--version")
    assert result.code == 0
    assert result.stdout.startswith("compressor ")


def test_debug_shows_the_traceback_and_keeps_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug adds the traceback; bad input still exits 2, not 1 (the gate's "failed")."""
    result = run_cli(capsys, "--debug", "gate", str(tmp_path / "nope"))
    assert result.code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")
