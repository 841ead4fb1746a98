"""Shared by the export tests and their fixtures."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from compressor.cli import app
from tests.cli_helpers import CliResult

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


def report_of(run: Path) -> dict:
    return json.loads((run / "export" / "export_report.json").read_text())


def rows_of(report: dict) -> dict[tuple[str, str, str], dict]:
    return {(r["model"], r["backend"], r["precision"]): r for r in report["results"]}


def one_error_line(result: CliResult) -> str:
    """A bad input ends with exit 2 and exactly one `error:` line, no traceback."""
    assert result.code == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def seeded_build(make: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """A test teacher's entrypoint: the same weights on every call, as a teacher that loads
    pretrained ones (a run pins its teacher by them); `seed: null` in teacher.kwargs draws
    new ones each time. The global random state is left as it was."""
    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def copy_run(run: Path, to: Path, status: str | list[str] | None) -> Path:
    """A copy of a finished run (without its export) whose manifest says `status`."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("export"))
    manifest = json.loads((to / "manifest.json").read_text())
    if status is None:
        manifest.pop("status")
    else:
        manifest["status"] = status
    (to / "manifest.json").write_text(json.dumps(manifest))
    return to


def folder_contents(folder: Path) -> dict[str, bytes]:
    """Every entry of a folder (a leftover staging folder included) with its bytes."""
    return {
        path.name: path.read_bytes() if path.is_file() else b"<folder>" for path in folder.iterdir()
    }
