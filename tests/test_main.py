"""compressor/__main__.py: the console script's first moments."""

from __future__ import annotations

import signal

import pytest

from tests.signal_helpers import ctrl_c_while_importing


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs POSIX signals")
def test_ctrl_c_while_loading_the_command_line_is_one_line_and_130() -> None:
    """Before compressor.cli (typer, rich) has loaded: no traceback through importlib."""
    result = ctrl_c_while_importing("typer", "models")
    assert result.returncode == 130, result.stderr
    assert result.stderr == "stopped by Ctrl-C while starting; nothing was done\n"
    assert result.stdout == ""
