"""Shared by the export tests and their fixtures."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from compressor.cli import app

# Latency settings that keep every export in these tests to a few seconds on 2 CPU cores;
# timings are checked for structure and sign, never for speed.
QUICK = ["--batch-sizes", "1,8", "--runs", "2", "--warmup", "1"]


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def invoke(*args: str) -> None:
    """Run a `compress` command that must succeed (fixtures: no capsys at session scope)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
