"""compressor/terminal.py: what the commands print, as a CI log or a pipe receives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.terminal import printable
from tests.cli_helpers import run_cli
from tests.export.helpers import one_error_line


def test_a_long_line_stays_one_line_off_a_terminal() -> None:
    """Off a terminal rich assumes 80 columns; a result or warning broken across lines could
    not be grepped out of a CI log."""
    line = "warning: noisy latency for student pytorch fp32 at batch 1: " + "x" * 200
    script = (
        "from compressor.terminal import console, error_console\n"
        f"console.print({line!r})\n"
        f"error_console.print({line!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout == line + "\n"
    assert done.stderr == line + "\n"


def test_a_zero_terminal_width_still_prints_every_line() -> None:
    """rich takes COLUMNS=0 at its word: every line, the error line too, came out empty."""
    script = (
        "from compressor.terminal import console, error_console\n"
        "console.print('gate passed')\n"
        "error_console.print('error: runs/nope: not found')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "0"},
    )
    assert done.stdout == "gate passed\n"
    assert done.stderr == "error: runs/nope: not found\n"


def test_text_between_colons_is_printed_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rich read `:dog:` in a file name, or `models:rocket` in an entrypoint, as emoji."""
    line = one_error_line(run_cli(capsys, "recipe", "validate", str(tmp_path / "exp:dog:1.yaml")))
    assert line == f"error: {tmp_path / 'exp:dog:1.yaml'}: recipe file not found (check the path)"


def test_control_characters_are_printed_as_escapes() -> None:
    """Text read from a run directory may carry terminal escapes: C0 (ESC), DEL and C1 (CSI,
    0x9b, which some terminals take as ESC [); newlines and tabs stay."""
    assert printable("a\x1b[2Jb\x07c\x7fd\x9b31me\tf\ng") == (
        "a\\x1b[2Jb\\x07c\\x7fd\\x9b31me\tf\ng"
    )
