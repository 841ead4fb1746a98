"""`--overwrite` without loss: the run it replaces is set aside beside it, and removed only
once the new run completes; messages say where it is and how to go back."""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

from filelock import FileLock

from compressor.errors import UserError
from compressor.io import lock_or_refuse, what_to_do
from compressor.provenance import now_iso
from compressor.rundir.layout import RunDir, has_checkpoint, holds_run, manifest_record
from compressor.rundir.status import lock_run

# Marks a folder as one `set_aside_replaced_run` made, so a run the user named
# `<name>.replaced` is never taken for it (and never deleted). It names the run it was set
# aside from: a run put back with the go-back command keeps the marker, and is not the
# set-aside folder of another run even when its own name ends in `.replaced`.
SET_ASIDE_MARK = ".set-aside"
_MARK_TEXT = (
    "Set aside by --overwrite of {root} on {time}; removed when the run that replaced it "
    "completes.\n"
)
_MARK_PATTERN = re.compile(r"Set aside by --overwrite of (?P<root>.+) on \S+; removed when")


def set_aside_replaced_run(run: RunDir, lock: FileLock) -> FileLock:
    """`--overwrite`, holding the run's `lock`: move the run directory to `<name>.replaced`
    beside it instead of deleting it, so a new run that is interrupted, or fails, costs
    nothing already written; `discard_replaced_run` removes it once the new run completes.
    Returns the lock the new run holds from here on.

    One rename of the whole folder, so at every instant the old run is whole, under its name
    or aside: moved entry by entry, a process killed part-way left it split between the two,
    and the next command deleted one part. The lock file goes aside with it, still held until
    the new folder's own lock is: another claim finds the run locked, or gone.

    What is kept is the last run that can be gone back to: an earlier --overwrite's set-aside
    run stays while the run it was replaced by has not completed (that unfinished run is what
    goes), and is itself replaced by a completed run.

    The new run is marked as the one replacing it (`RunDir.replacing`): a run started there
    later without --overwrite (the user removed the unfinished one) never removes it.
    """
    aside = run.set_aside
    check_set_aside_free(run)
    completed = (manifest_record(run) or {}).get("status") == "completed"
    # Nothing to go back to: a run stopped before its first checkpoint is only its recipe.
    worth_keeping = completed or has_checkpoint(run)
    with ExitStack() as held:
        export_lock = refuse_while_exporting(run)
        if export_lock is not None:
            held.callback(export_lock.release)
        try:
            if (aside.exists() and not completed) or not worth_keeping:
                _empty(run)
            else:
                lock = _move_aside(run, lock)
            run.checkpoint.parent.mkdir(exist_ok=True)
            if holds_set_aside(run):
                run.replacing.write_text(
                    f"This run replaces the one set aside in {aside}, which goes when it "
                    "completes.\n",
                    encoding="utf-8",
                )
        except OSError as error:
            fix = what_to_do(run.root.parent, error.errno)  # a full disk, a size limit
            if fix is None or error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                fix = "make both writable"
            raise UserError(
                f"{run.root}: cannot set the run it replaces aside in {aside} "
                f"({error.strerror}); {fix}, or set output.name to start a new run"
            ) from None
    return lock


def check_set_aside_free(run: RunDir) -> None:
    """`<name>.replaced` is free for --overwrite, or its own from an earlier --overwrite: a
    folder of the user's by that name is never replaced. Nor is a set-aside run that the run
    here did not replace (started without --overwrite, once the unfinished replacement was
    removed; or by a compressor without the mark): its completion kept it, saying so, and
    the next --overwrite deleted it without a word."""
    if not run.set_aside.exists():
        return
    if not holds_set_aside(run):
        raise UserError(
            f"{run.set_aside}: in the way of --overwrite, which keeps the run it replaces there "
            "until the new one completes; move or rename that folder"
        )
    if holds_run(run) and not run.replacing.exists():
        raise UserError(
            f"{run.set_aside}: holds a run an earlier --overwrite set aside, which the run in "
            f"{run.root} did not replace (it was started without --overwrite); --overwrite "
            f"keeps the run it replaces there: remove that one (rm -r "
            f"{shlex.quote(str(run.set_aside))}) or move it away first"
        )


def refuse_while_exporting(run: RunDir) -> FileLock | None:
    """Take the run's export lock, or refuse: an --overwrite must not move export/ away from
    an export that is writing into it. Held by the caller while it moves the run; None when
    there is none, or it cannot be locked to find out (read-only: moving will say why)."""
    if not (run.export_dir / ".lock").exists():  # `compress export` holds it while it writes
        return None
    busy = (
        f"{run.root}: an export of this run is writing into {run.export_dir}, or a gate is "
        "reading it, now; wait for it to end, then --overwrite"
    )
    try:
        return lock_or_refuse(run.export_dir / ".lock", busy)
    except OSError:
        return None


def _empty(run: RunDir) -> None:
    """The run goes without being set aside: all it holds but its lock."""
    for entry in run.root.iterdir():
        if entry.name != run.lock.name:
            _remove(entry)


def _move_aside(run: RunDir, lock: FileLock) -> FileLock:
    """The run directory renamed to `<name>.replaced` (an earlier set-aside run there goes
    first), and its name made again, empty, under a lock of its own; returns that lock."""
    aside = run.set_aside
    if aside.exists():
        _delete(aside)
    # This run replaced none that is still kept: going back to it must not make it remove
    # the run set aside now, should it complete after another --overwrite's.
    run.replacing.unlink(missing_ok=True)
    mark = _MARK_TEXT.format(root=run.root, time=now_iso())
    try:
        (run.root / SET_ASIDE_MARK).write_text(mark, encoding="utf-8")  # renamed with the run
    except OSError:  # a full disk: no empty mark left to say the run is set aside
        (run.root / SET_ASIDE_MARK).unlink(missing_ok=True)
        raise
    if os.name == "nt":  # Windows renames no folder with a file open in it: the lock's
        lock.release()
    run.root.rename(aside)
    run.root.mkdir()
    new_lock = lock_run(run)  # refused only if another process claimed the new folder first
    lock.release()
    return new_lock


def _delete(folder: Path) -> None:
    """Out of its name in one rename, then deleted: a process killed while deleting leaves a
    hidden folder beside it, never part of the folder under its name; such folders, left
    by earlier deletions of this one, go too."""
    prefix = f".{folder.name}."
    with tempfile.TemporaryDirectory(
        prefix=prefix, dir=folder.parent, ignore_cleanup_errors=True
    ) as bin_:
        folder.rename(Path(bin_) / folder.name)
    left = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}")  # TemporaryDirectory's names
    for entry in folder.parent.iterdir():
        if left.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def discard_replaced_run(run: RunDir) -> str | None:
    """The new run completed: the one its --overwrite set aside goes, unless an export or a
    gate of it is running (it can be read until now). What was done, for the run's messages;
    None when there was none.

    Its export lock is held while the folder is moved out of its name, and only then is it
    deleted: an export that read the run before can then neither write into a folder being
    deleted (it crashed, and the export/ it made anew stopped the next --overwrite), nor
    make it again (export/ is made only inside an existing run).

    Only a run marked as the replacement removes it: after an interrupted --overwrite, the
    user may remove the unfinished run and start one anew without --overwrite, meaning to
    keep the set-aside one; it was deleted, exports and all, when that run completed.
    """
    aside = run.set_aside
    if not holds_set_aside(run):
        run.replacing.unlink(missing_ok=True)
        return None
    if not run.replacing.exists():
        return (
            f"kept {aside}, the run an earlier --overwrite set aside: this run is not marked as "
            "its replacement (it was started without --overwrite, or by an older compressor); "
            f"remove that one when you no longer need it (rm -r {shlex.quote(str(aside))})"
        )
    lock = aside / "export" / ".lock"
    kept = (
        f"kept {aside}, the run this one replaced: an export or a gate of it is running; "
        f"remove it once that ends (rm -r {shlex.quote(str(aside))})"
    )
    try:
        held = lock_or_refuse(lock, kept) if lock.exists() else None
    except UserError:
        return kept
    except OSError:  # cannot be locked to find out (read-only): deleting will fail too
        held = None
    try:
        _delete(aside)
    except OSError as error:
        return f"could not remove {aside}, the run this one replaced ({error.strerror})"
    finally:
        if held is not None:
            held.release()
    run.replacing.unlink(missing_ok=True)
    return f"removed {aside}, the run this one replaced"


def holds_set_aside(run: RunDir) -> bool:
    """Is `<name>.replaced` the folder an --overwrite of this run set aside? Its marker must
    name this run: one that names another is a run the user named `<name>.replaced` and put
    back from its own set-aside folder with the go-back command, which is theirs to keep.
    (Names, not paths, are compared: the run may be reached by another path than the one
    training was given, or the runs folder moved since.)"""
    try:
        text = (run.set_aside / SET_ASIDE_MARK).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    found = _MARK_PATTERN.match(text)
    return found is not None and Path(found["root"]).name == run.root.name


def set_aside_note(run: RunDir) -> str:
    """For messages about an unfinished run: where the run it replaced is, and how to go
    back to it; empty when an --overwrite set none aside."""
    if not holds_set_aside(run):
        return ""
    return (
        f" (the run it replaced is kept in {run.set_aside} until it completes; to go back: "
        f"{_go_back_command(run)})"
    )


def set_aside_only_note(run: RunDir) -> str:
    """For messages about a run folder that is gone: an --overwrite killed while it set the
    run aside, or its unfinished replacement removed by hand, leaves the run under the
    set-aside name alone; empty when none is there."""
    if not holds_set_aside(run):
        return ""
    root, aside = (shlex.quote(str(path)) for path in (run.root, run.set_aside))
    return (
        f"; {run.set_aside} holds the run an --overwrite of it set aside: to go back to it, "
        f"mv {aside} {root}"
    )


def set_aside_file_note(path: Path | str) -> str:
    """For messages about a file of another run (a teacher: runs/teacher/student.pt) that is
    missing or not the one expected because that run is being replaced by an --overwrite:
    where the file it had is, and how to go back; empty otherwise."""
    path = Path(path)
    owner = RunDir(path.parent)
    kept = owner.set_aside / path.name
    if not holds_set_aside(owner) or not kept.is_file():
        return ""
    return (
        f" ({owner.root} is being replaced by an --overwrite that has not completed; the file "
        f"it held is kept in {kept}; to go back: {_go_back_command(owner)})"
    )


def _go_back_command(run: RunDir) -> str:
    root, aside = (shlex.quote(str(path)) for path in (run.root, run.set_aside))
    return f"rm -r {root} && mv {aside} {root}"


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()
