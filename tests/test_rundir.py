"""compressor/rundir.py: claiming, checking, marking and replacing a run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from compressor.errors import UserError
from compressor.rundir import (
    RunDir,
    check_run_dir,
    claim_run_dir,
    discard_replaced_run,
    mark_stopped,
    set_aside_file_note,
    set_aside_note,
)


def _started_run(root: Path, started: str = "2026-01-01T00:00:00+00:00") -> RunDir:
    run = RunDir(root)
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"old run")
    run.checkpoint.with_name("previous-last.pt").write_bytes(b"older")
    run.manifest.write_text(json.dumps({"status": "running", "started": started}))
    return run


def test_overwrite_sets_the_old_run_aside_and_starts_empty(tmp_path: Path) -> None:
    """Nothing of the old run is lost to an --overwrite that is then interrupted, and none of
    it can be read as the new run's (a --resume of the new run must not continue the old)."""
    run = _started_run(tmp_path / "run")
    (run.root / "student.pt").write_bytes(b"old student")
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert sorted(p.name for p in run.root.iterdir()) == [".lock", "checkpoints"]
    assert not any(run.checkpoint.parent.iterdir())
    aside = tmp_path / "run.replaced"
    assert (aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    assert (aside / "checkpoints" / "previous-last.pt").read_bytes() == b"older"
    assert (aside / "student.pt").read_bytes() == b"old student"
    assert json.loads((aside / "manifest.json").read_text())["status"] == "running"
    with pytest.raises(UserError, match=r"nothing to resume .*; drop --resume"):
        check_run_dir(run, resume=True, overwrite=False)
    note = set_aside_note(run)
    assert f"kept in {aside} until it completes" in note
    assert note.endswith(f"to go back: rm -r {run.root} && mv {aside} {run.root})")
    assert discard_replaced_run(run) and not aside.exists()
    assert set_aside_note(run) == "" and not discard_replaced_run(run)


def test_an_unfinished_replacement_does_not_push_out_the_run_it_replaced(tmp_path: Path) -> None:
    """--overwrite, Ctrl-C, --overwrite: what stays aside is the run from before the first,
    the last one that can be gone back to; a completed run takes its place."""
    run = _started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    aside = tmp_path / "run.replaced"
    run.manifest.write_text(json.dumps({"status": "interrupted"}))
    run.checkpoint.write_bytes(b"unfinished replacement")
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert (aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    assert not run.manifest.exists() and not run.checkpoint.exists()

    run.manifest.write_text(json.dumps({"status": "completed"}))  # killed before discarding
    run.checkpoint.write_bytes(b"completed replacement")
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert (aside / "checkpoints" / "last.pt").read_bytes() == b"completed replacement"


def test_overwrite_waits_for_an_export_of_the_run_to_end(tmp_path: Path) -> None:
    run = _started_run(tmp_path / "run")
    run.export_dir.mkdir()
    export = FileLock(run.export_dir / ".lock")
    export.acquire()
    with pytest.raises(UserError, match="an export of this run is writing into"):
        claim_run_dir(run, resume=False, overwrite=True)
    assert run.checkpoint.read_bytes() == b"old run" and not run.set_aside.exists()
    export.release()
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert (run.set_aside / "export" / ".lock").exists()


def test_a_run_with_nothing_to_go_back_to_is_not_set_aside(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.manifest.write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(UserError, match="stopped before its first checkpoint; use --overwrite"):
        check_run_dir(run, resume=False, overwrite=False)
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert not run.set_aside.exists() and not run.manifest.exists()


def test_a_started_run_is_refused_with_advice_for_its_state(tmp_path: Path) -> None:
    run = _started_run(tmp_path / "run")
    with pytest.raises(UserError, match="an unfinished run; use --resume to continue it"):
        check_run_dir(run, resume=False, overwrite=False)
    run.manifest.write_text(json.dumps({"status": "completed"}))
    with pytest.raises(UserError, match="a completed run; use --overwrite to train it again"):
        check_run_dir(run, resume=False, overwrite=False)


def test_a_folder_of_that_name_that_overwrite_did_not_make_is_never_touched(
    tmp_path: Path,
) -> None:
    run = _started_run(tmp_path / "run")
    theirs = tmp_path / "run.replaced"
    theirs.mkdir()
    (theirs / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=r"run\.replaced: in the way of --overwrite"):
        claim_run_dir(run, resume=False, overwrite=True)
    assert run.checkpoint.read_bytes() == b"old run"
    assert not discard_replaced_run(run) and (theirs / "manifest.json").exists()
    assert set_aside_note(run) == ""


def _go_back(run: RunDir) -> None:
    """The go-back command the messages print: `rm -r RUN && mv RUN.replaced RUN`."""
    shutil.rmtree(run.root)
    run.set_aside.rename(run.root)


def test_a_run_put_back_named_like_a_set_aside_folder_is_not_taken_for_one(
    tmp_path: Path,
) -> None:
    """A run the user named `run.replaced`, overwritten and then put back, comes back with the
    marker of its own set-aside folder: `run`'s --overwrite must not take it for the run
    `run` set aside, and delete it."""
    theirs = _started_run(tmp_path / "run.replaced")
    claim_run_dir(theirs, resume=False, overwrite=True).release()
    _go_back(theirs)
    assert (theirs.root / ".set-aside").is_file()
    run = _started_run(tmp_path / "run")
    run.manifest.write_text(json.dumps({"status": "completed"}))
    with pytest.raises(UserError, match=r"run\.replaced: in the way of --overwrite"):
        claim_run_dir(run, resume=False, overwrite=True)
    assert theirs.checkpoint.read_bytes() == b"old run"
    assert set_aside_note(run) == "" and set_aside_file_note(run.manifest) == ""
    assert not discard_replaced_run(run) and theirs.checkpoint.is_file()


def test_a_run_put_back_is_set_aside_again_under_a_marker_of_its_own(tmp_path: Path) -> None:
    """The marker that came back with the run is not moved over the new --overwrite's (on
    Windows, moving a file onto one stops the move halfway)."""
    run = _started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    _go_back(run)
    came_back = run.root / ".set-aside"
    came_back.write_text(
        "Set aside by --overwrite of run on 2020-01-01T00:00:00+00:00; removed when"
    )
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert sorted(p.name for p in run.root.iterdir()) == [".lock", "checkpoints"]
    assert (run.set_aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    assert "2020" not in (run.set_aside / ".set-aside").read_text()
    assert discard_replaced_run(run) and not run.set_aside.exists()


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


def test_resuming_a_run_folder_that_is_not_there_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative output.dir is read from the working folder: from another folder the run is
    not found, and "drop --resume" alone would start a new run in the wrong place."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as relative:
        check_run_dir(RunDir(Path("runs") / "r20"), resume=True, overwrite=False)
    assert str(relative.value) == (
        f"runs/r20: no such run to resume (output.dir is read from the working folder, here "
        f"{tmp_path}); run the command from the folder the run was started in, or drop "
        "--resume to start it here"
    )
    with pytest.raises(UserError, match=r"no such run to resume; check output.dir and output"):
        check_run_dir(RunDir(tmp_path / "runs" / "r20"), resume=True, overwrite=False)


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


def test_a_file_of_a_run_being_replaced_is_found_where_it_was_set_aside(tmp_path: Path) -> None:
    """A distillation run's teacher is another run's student.pt: while an --overwrite of that
    run is unfinished, export's "not found" names where the teacher is and how to go back."""
    run = _started_run(tmp_path / "teacher")
    run.student.write_bytes(b"the teacher")
    assert set_aside_file_note(run.student) == ""
    claim_run_dir(run, resume=False, overwrite=True).release()
    note = set_aside_file_note(run.student)
    kept = tmp_path / "teacher.replaced" / "student.pt"
    assert f"the file it held is kept in {kept}" in note
    assert note.endswith(f"to go back: rm -r {run.root} && mv {run.set_aside} {run.root})")
    assert set_aside_file_note(run.root / "other.pt") == ""
    assert discard_replaced_run(run)
    assert set_aside_file_note(run.student) == ""
