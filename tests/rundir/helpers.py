"""A run directory as a started run leaves it, for the tests of compressor/rundir/."""

from __future__ import annotations

import json
from pathlib import Path

from compressor.rundir import RunDir


def started_run(root: Path, started: str = "2026-01-01T00:00:00+00:00") -> RunDir:
    run = RunDir(root)
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"old run")
    run.checkpoint.with_name("previous-last.pt").write_bytes(b"older")
    run.manifest.write_text(json.dumps({"status": "running", "started": started}))
    return run
