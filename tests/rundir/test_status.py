"""compressor/rundir/status.py: marking how a run stopped."""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock

from compressor.rundir import mark_stopped
from compressor.rundir.status import is_being_trained
from tests.read_only import immutable
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


def test_a_killed_run_whose_lock_cannot_be_written_is_told_from_a_live_one(
    tmp_path: Path,
) -> None:
    """A read-only copy of a run killed mid-training (a CI artifact): its lock could not be
    taken to find out, and the run was called "still being trained"."""
    run = started_run(tmp_path / "run")
    run.lock.touch()
    with immutable(run.lock):  # opened for writing, it is refused, root included
        assert not is_being_trained(run)
    with FileLock(run.lock):
        assert is_being_trained(run)


def test_a_run_without_a_lock_file_is_not_being_trained(tmp_path: Path) -> None:
    """No lock file means no process ever claimed the folder as it is now (a copied run, one
    made by an older compressor): called "being trained", it could be neither exported nor
    gated, and the user told to wait for a training that does not exist."""
    run = started_run(tmp_path / "run")
    assert not run.lock.exists()
    assert not is_being_trained(run)
