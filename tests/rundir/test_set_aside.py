"""compressor/rundir/set_aside.py: --overwrite sets the run it replaces aside, and only it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from compressor.errors import UserError
from compressor.io import shared_lock_or_refuse
from compressor.rundir import (
    RunDir,
    check_run_dir,
    claim_run_dir,
    discard_replaced_run,
    read_completed_run,
    set_aside_file_note,
    set_aside_note,
)
from compressor.rundir.status import lock_run
from tests.disk_full import file_size_limit, needs_file_size_limits
from tests.rundir.helpers import started_run


def test_overwrite_sets_the_old_run_aside_and_starts_empty(tmp_path: Path) -> None:
    """Nothing of the old run is lost to an --overwrite that is then interrupted, and none of
    it can be read as the new run's (a --resume of the new run must not continue the old)."""
    run = started_run(tmp_path / "run")
    (run.root / "student.pt").write_bytes(b"old student")
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert sorted(p.name for p in run.root.iterdir()) == [".lock", ".replacing", "checkpoints"]
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


def test_the_run_goes_aside_in_one_rename_and_the_new_folder_is_locked_at_once(
    tmp_path: Path,
) -> None:
    """Moved entry by entry, a process killed part-way left the old run split between its
    folder and the set-aside one, and the next command deleted one part: the set-aside
    folder must be the run's own folder, renamed, so it is whole on one side or the other."""
    run = started_run(tmp_path / "run")
    (run.root / "student.pt").write_bytes(b"old student")
    folder = run.root.stat().st_ino
    lock = claim_run_dir(run, resume=False, overwrite=True)
    assert run.set_aside.stat().st_ino == folder
    assert sorted(p.name for p in run.set_aside.iterdir()) == [
        ".lock",
        ".set-aside",
        "checkpoints",
        "manifest.json",
        "student.pt",
    ]
    with pytest.raises(UserError, match="another process is training this run now"):
        lock_run(run)  # the new folder's lock is this claim's
    lock.release()
    lock_run(run).release()


def test_what_killed_writes_and_deletions_left_goes_with_the_next_claim(tmp_path: Path) -> None:
    """A scratch file of a write killed before its rename, in the run and its checkpoints,
    and the hidden folder a deletion of the set-aside run killed part-way left beside it."""
    run = started_run(tmp_path / "run")
    scratch = [
        run.root / ".manifest.json.a1b2c3d4.tmp",
        run.checkpoint.parent / ".last.pt.z_9y8x7w.tmp",
    ]
    for path in scratch:
        path.write_bytes(b"half")
    claim_run_dir(run, resume=True, overwrite=False).release()
    assert not any(path.exists() for path in scratch)
    assert run.checkpoint.read_bytes() == b"old run"

    left = tmp_path / ".run.replaced.abcd_123" / "run.replaced"
    left.mkdir(parents=True)
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert discard_replaced_run(run) == f"removed {run.set_aside}, the run this one replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_refusing_an_unfinished_replacement_says_how_to_go_back(tmp_path: Path) -> None:
    """`compress train` without a flag, after an --overwrite stopped before its first
    checkpoint: export and the gate said where the old run was; the refusal did not."""
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    run.manifest.write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(UserError) as refused:
        check_run_dir(run, resume=False, overwrite=False)
    assert str(refused.value) == (
        f"{run.root} already holds a run stopped before its first checkpoint; use --overwrite "
        f"to start it again, or set output.name to start a new one{set_aside_note(run)}"
    )
    assert set_aside_note(run)


def test_an_unfinished_replacement_does_not_push_out_the_run_it_replaced(tmp_path: Path) -> None:
    """--overwrite, Ctrl-C, --overwrite: what stays aside is the run from before the first,
    the last one that can be gone back to; a completed run takes its place."""
    run = started_run(tmp_path / "run")
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
    run = started_run(tmp_path / "run")
    run.export_dir.mkdir()
    export = FileLock(run.export_dir / ".lock")
    export.acquire()
    with pytest.raises(UserError, match=r"an export of this run is writing into .*, or a gate"):
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


def test_a_folder_of_that_name_that_overwrite_did_not_make_is_never_touched(
    tmp_path: Path,
) -> None:
    run = started_run(tmp_path / "run")
    theirs = tmp_path / "run.replaced"
    theirs.mkdir()
    (theirs / "manifest.json").write_text("{}")
    # Refused by the check a run makes before it reads the data, and again by the claim.
    for start in (check_run_dir, claim_run_dir):
        with pytest.raises(UserError, match=r"run\.replaced: in the way of --overwrite"):
            start(run, resume=False, overwrite=True)
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
    theirs = started_run(tmp_path / "run.replaced")
    claim_run_dir(theirs, resume=False, overwrite=True).release()
    _go_back(theirs)
    assert (theirs.root / ".set-aside").is_file()
    run = started_run(tmp_path / "run")
    run.manifest.write_text(json.dumps({"status": "completed"}))
    with pytest.raises(UserError, match=r"run\.replaced: in the way of --overwrite"):
        claim_run_dir(run, resume=False, overwrite=True)
    assert theirs.checkpoint.read_bytes() == b"old run"
    assert set_aside_note(run) == "" and set_aside_file_note(run.manifest) == ""
    assert not discard_replaced_run(run) and theirs.checkpoint.is_file()


def test_a_run_put_back_is_set_aside_again_under_a_marker_of_its_own(tmp_path: Path) -> None:
    """The marker that came back with the run is not moved over the new --overwrite's (on
    Windows, moving a file onto one stops the move halfway)."""
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    _go_back(run)
    came_back = run.root / ".set-aside"
    came_back.write_text(
        "Set aside by --overwrite of run on 2020-01-01T00:00:00+00:00; removed when"
    )
    claim_run_dir(run, resume=False, overwrite=True).release()
    assert sorted(p.name for p in run.root.iterdir()) == [".lock", ".replacing", "checkpoints"]
    assert (run.set_aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    assert "2020" not in (run.set_aside / ".set-aside").read_text()
    assert discard_replaced_run(run) and not run.set_aside.exists()


def test_a_file_of_a_run_being_replaced_is_found_where_it_was_set_aside(tmp_path: Path) -> None:
    """A distillation run's teacher is another run's student.pt: while an --overwrite of that
    run is unfinished, export's "not found" names where the teacher is and how to go back."""
    run = started_run(tmp_path / "teacher")
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


def test_a_set_aside_run_being_exported_or_gated_is_kept_until_that_ends(tmp_path: Path) -> None:
    """It can be read until the new run completes; deleting it under an export crashed the
    export, and the export/ it made anew stopped the next --overwrite."""
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    lock = run.set_aside / "export" / ".lock"
    lock.parent.mkdir()
    kept = (
        f"kept {run.set_aside}, the run this one replaced: an export or a gate of it is "
        f"running; remove it once that ends (rm -r {run.set_aside})"
    )
    with FileLock(lock):  # an export
        assert discard_replaced_run(run) == kept
    release = shared_lock_or_refuse(lock, "busy")  # a gate
    assert discard_replaced_run(run) == kept
    release()
    assert (run.set_aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    assert discard_replaced_run(run) == f"removed {run.set_aside}, the run this one replaced"
    assert sorted(tmp_path.iterdir()) == [run.root]  # nothing left of it, nor of its removal


def test_only_the_run_started_with_overwrite_removes_the_one_it_set_aside(
    tmp_path: Path,
) -> None:
    """--overwrite stopped, its unfinished run removed by hand, the recipe run again without
    --overwrite: that run replaced nothing, and its completion deleted the set-aside run,
    a completed one, exports and all. A run put back with the go-back command replaces
    nothing either."""
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    shutil.rmtree(run.root)
    claim_run_dir(run, resume=False, overwrite=False).release()
    assert discard_replaced_run(run) == (
        f"kept {run.set_aside}, the run an earlier --overwrite set aside: this run is not marked "
        "as its replacement (it was started without --overwrite, or by an older compressor); "
        f"remove that one when you no longer need it (rm -r {run.set_aside})"
    )
    assert (run.set_aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    # Kept, it is the user's: the next --overwrite refused, rather than delete it unsaid.
    run.manifest.write_text(json.dumps({"status": "completed"}))
    run.checkpoint.parent.mkdir(exist_ok=True)
    run.checkpoint.write_bytes(b"plain run")
    with pytest.raises(UserError, match=r"did not replace .*: remove that one"):
        check_run_dir(run, resume=False, overwrite=True)
    with pytest.raises(UserError, match="did not replace"):
        claim_run_dir(run, resume=False, overwrite=True)
    assert (run.set_aside / "checkpoints" / "last.pt").read_bytes() == b"old run"
    assert run.checkpoint.read_bytes() == b"plain run"
    run.checkpoint.unlink()
    run.manifest.unlink()

    shutil.rmtree(run.root)
    run.set_aside.rename(run.root)  # the go-back command
    claim_run_dir(run, resume=True, overwrite=False).release()
    assert discard_replaced_run(run) is None and not run.replacing.exists()


def test_a_run_resumed_after_its_overwrite_was_stopped_still_replaces(tmp_path: Path) -> None:
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    run.checkpoint.write_bytes(b"new run")
    claim_run_dir(run, resume=True, overwrite=False).release()
    assert discard_replaced_run(run) == f"removed {run.set_aside}, the run this one replaced"
    assert not run.replacing.exists()


def test_a_run_found_only_aside_is_named_where_the_run_is_missing(tmp_path: Path) -> None:
    """An --overwrite killed between moving the run aside and making its folder again, or its
    unfinished run removed by hand: export, the gate and --resume said only "no such run"."""
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    shutil.rmtree(run.root)
    back = f"{run.set_aside} holds the run an --overwrite of it set aside: to go back to it, mv"
    with pytest.raises(UserError, match="no such run directory") as missing:
        read_completed_run(run)
    assert back in str(missing.value)
    with pytest.raises(UserError, match="no such run to resume") as missing:
        check_run_dir(run, resume=True, overwrite=False)
    assert back in str(missing.value)


@needs_file_size_limits
def test_a_run_that_cannot_be_set_aside_is_left_as_it_was_and_the_fix_fits_the_cause(
    tmp_path: Path,
) -> None:
    """On a full disk the mark that goes with a set-aside run could not be written: the line
    said "make both writable", and an empty mark was left in the run."""
    run = started_run(tmp_path / "run")
    before = sorted(path.name for path in run.root.rglob("*"))
    with file_size_limit(10), pytest.raises(UserError) as error:
        claim_run_dir(run, resume=False, overwrite=True)
    assert str(error.value) == (
        f"{run.root}: cannot set the run it replaces aside in {tmp_path / 'run.replaced'} "
        "(File too large); the file is larger than this process may write (see `ulimit -f`), "
        "or set output.name to start a new run"
    )
    after = sorted(path.name for path in run.root.rglob("*") if path.name != ".lock")
    assert after == before  # the lock the claim took is all it leaves
    assert not (tmp_path / "run.replaced").exists()


def test_a_users_folder_named_like_a_deletion_left_over_survives_the_removal(
    tmp_path: Path,
) -> None:
    """Removing the set-aside run also sweeps the hidden folders an earlier removal killed
    part-way left (`.run.replaced.` and 8 random characters); a user's own folder that only
    starts like one (a backup they named `.run.replaced.backup-of-mine`) is theirs and must
    not be deleted with it."""
    run = started_run(tmp_path / "run")
    claim_run_dir(run, resume=False, overwrite=True).release()
    theirs = tmp_path / ".run.replaced.backup-of-mine"
    (theirs / "notes").mkdir(parents=True)
    assert discard_replaced_run(run) == f"removed {run.set_aside}, the run this one replaced"
    assert (theirs / "notes").is_dir() and not run.set_aside.exists()


def test_a_run_emptied_by_overwrite_keeps_its_lock_and_refuses_a_second_claim(
    tmp_path: Path,
) -> None:
    """A run with nothing to go back to is emptied in place rather than set aside: its lock
    file must stay, or a second training of the same run would lock a new file of that name
    and both would write the same checkpoints."""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.manifest.write_text(json.dumps({"status": "interrupted"}))
    held = claim_run_dir(run, resume=False, overwrite=True)
    try:
        assert not run.set_aside.exists() and run.lock.is_file()
        with pytest.raises(UserError, match="another process is training this run now"):
            claim_run_dir(run, resume=False, overwrite=True)
    finally:
        held.release()
