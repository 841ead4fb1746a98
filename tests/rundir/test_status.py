"""compressor/rundir/status.py: marking how a run stopped."""

from __future__ import annotations

import json
from pathlib import Path

from compressor.rundir import mark_stopped
from tests.rundir.helpers import started_run


def test_stopped_is_marked_only_on_the_processs_own_run(tmp_path: Path) -> None:
    run = started_run(tmp_path / "run")
    record = {**json.loads(run.manifest.read_text()), "attempt": "mine"}
    run.manifest.write_text(json.dumps(record))
    mark_stopped(run, "theirs")  # a process refused the run, or an earlier crash
    assert json.loads(run.manifest.read_text())["status"] == "running"
    mark_stopped(run, "mine", status="failed")
    assert json.loads(run.manifest.read_text())["status"] == "failed"
    mark_stopped(run, "mine")  # only a running manifest changes
    assert json.loads(run.manifest.read_text())["status"] == "failed"
