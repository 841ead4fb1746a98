"""Run the real `compress` entry point in-process and capture what a user would see."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from compressor.entry import main


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    argv = sys.argv
    sys.argv = ["compress", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def with_recipe(text: str, run: Path) -> str:
    """`text` with RECIPE as the messages about `run` write it: the recipe file that started
    the run (compressor/rundir/completed.py run_command), or RECIPE when its manifest is gone or the
    run is a copy (that recipe would train the original)."""
    manifest = run / "manifest.json"
    if not manifest.is_file():
        return text
    record = json.loads(manifest.read_text())
    if record.get("run_root") != str(run.resolve()):
        return text
    return text.replace("RECIPE", shlex.quote(record["recipe_file"]))
