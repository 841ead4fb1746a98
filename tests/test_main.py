"""compressor/__main__.py: the console script's first moments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.signal_helpers import ctrl_c_while_importing, needs_posix_signals


@needs_posix_signals
def test_ctrl_c_while_loading_the_command_line_is_one_line_and_130() -> None:
    """Before compressor.entry (typer, rich) has loaded: no traceback through importlib."""
    result = ctrl_c_while_importing("typer", "models")
    assert result.returncode == 130, result.stderr
    assert result.stderr == "stopped by Ctrl-C while starting; nothing was done\n"
    assert result.stdout == ""


def test_python_dash_m_does_not_import_the_users_files_in_place_of_its_own(
    tmp_path: Path,
) -> None:
    """`python -m` puts the working folder first on sys.path; `compress` does not."""
    for name in ("typer", "export", "yaml"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('{name}.py imported')\n")
    result = subprocess.run(
        [sys.executable, "-m", "compressor", "recipe", "validate", "missing.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "imported" not in result.stderr
    assert result.stderr.startswith("error: missing.yaml")
