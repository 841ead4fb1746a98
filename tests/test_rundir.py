"""compressor/rundir.py: the recipe hash, and claiming, checking and marking a run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from compressor.errors import UserError
from compressor.recipe import parse_recipe
from compressor.rundir import (
    RunDir,
    check_run_dir,
    claim_run_dir,
    mark_stopped,
    recipe_hash,
)


def _hash(**sections: Any) -> str:
    return recipe_hash(parse_recipe({"student": {"arch": "resnet8"}, **sections}, source="t"))


def test_spelling_out_a_default_keeps_the_hash() -> None:
    """What a recipe gets from a field added later with a default: the hash must not move,
    or every run made before the upgrade could no longer be resumed."""
    assert _hash(method={"name": "amkd"}) == _hash(method={"name": "amkd", "bank_epochs": 1})
    assert _hash() == _hash(method={"name": "ce"}, train={"epochs": 10})
    assert _hash() == _hash(export={"int8": {"calibration_images": 512}})


def test_what_the_recipe_asks_for_changes_the_hash() -> None:
    hashes = {
        _hash(),
        _hash(method={"name": "kd"}),
        _hash(method={"name": "amkd"}),
        _hash(method={"name": "bss"}),
        _hash(method={"name": "amkd", "bank_epochs": 2}),
        _hash(train={"epochs": 11}),
        _hash(export={"int8": {"calibration_images": 256}}),
    }
    assert len(hashes) == 7


def _started_run(root: Path, started: str = "2026-01-01T00:00:00+00:00") -> RunDir:
    run = RunDir(root)
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"old run")
    run.checkpoint.with_name("previous-last.pt").write_bytes(b"older")
    run.manifest.write_text(json.dumps({"status": "running", "started": started}))
    return run


def test_overwrite_removes_the_old_runs_checkpoints(tmp_path: Path) -> None:
    """Else an overwriting run stopped before its first checkpoint would --resume the old one."""
    run = _started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert not any(run.checkpoint.parent.iterdir())
    # Its manifest says a run is there: dropping --resume would be refused; --overwrite is it.
    with pytest.raises(UserError, match=r"nothing to resume .*; start it again with --overwrite"):
        check_run_dir(run, resume=True, overwrite=False)


def test_a_claimed_run_is_refused_to_everyone_else_until_released(tmp_path: Path) -> None:
    """The lock is an OS lock (flock): it is the second claim, not the process, that is
    refused, and it goes when the holder releases it or dies."""
    run = _started_run(tmp_path / "run")
    held = claim_run_dir(run, resume=True, overwrite=False)
    for resume, overwrite in [(True, False), (False, True)]:
        with pytest.raises(UserError, match="another process is training this run now"):
            claim_run_dir(run, resume=resume, overwrite=overwrite)
    assert run.checkpoint.read_bytes() == b"old run"  # the refused --overwrite deleted nothing
    held.release()
    claim_run_dir(run, resume=True, overwrite=False).release()


def test_a_finished_run_without_checkpoints_is_not_sent_to_overwrite(tmp_path: Path) -> None:
    """--overwrite would train a completed run again from scratch: say it has completed."""
    run = _started_run(tmp_path / "run")
    shutil.rmtree(run.checkpoint.parent)
    run.manifest.write_text(json.dumps({"status": "completed"}))
    with pytest.raises(UserError, match=r"nothing to resume .*; the run has completed"):
        check_run_dir(run, resume=True, overwrite=False)


def test_an_empty_checkpoints_folder_is_nothing_to_resume(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.checkpoint.parent.mkdir(parents=True)
    with pytest.raises(UserError, match=r"nothing to resume .*; drop --resume"):
        check_run_dir(run, resume=True, overwrite=False)


def test_stopped_is_marked_only_on_the_processs_own_run(tmp_path: Path) -> None:
    run = _started_run(tmp_path / "run")
    record = {**json.loads(run.manifest.read_text()), "attempt": "mine"}
    run.manifest.write_text(json.dumps(record))
    mark_stopped(run, "theirs")  # a process refused the run, or an earlier crash
    assert json.loads(run.manifest.read_text())["status"] == "running"
    mark_stopped(run, "mine", status="failed")
    assert json.loads(run.manifest.read_text())["status"] == "failed"
    mark_stopped(run, "mine")  # only a running manifest changes
    assert json.loads(run.manifest.read_text())["status"] == "failed"


def test_a_checkpoints_folder_that_cannot_be_written_is_refused_before_training(
    tmp_path: Path,
) -> None:
    """Found at the first checkpoint, it would cost an epoch and end in a traceback. (A file
    in its place stands in for a read-only folder, which root could still write.)"""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.checkpoint.parent.write_bytes(b"")
    with pytest.raises(UserError, match=r"checkpoints: cannot write the run directory"):
        claim_run_dir(run, resume=False, overwrite=False)
