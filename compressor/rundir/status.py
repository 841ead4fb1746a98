"""Who holds a run (its lock) and how it stopped (its manifest's status)."""

from __future__ import annotations

import contextlib

from filelock import FileLock

from compressor.errors import UserError
from compressor.io import WriteFailed, lock_or_refuse, shared_lock_or_refuse, write_json
from compressor.provenance import now_iso
from compressor.rundir.layout import RunDir, manifest_record


def mark_stopped(
    run: RunDir, attempt: str, status: str = "interrupted", reason: str | None = None
) -> bool:
    """Record in the manifest that the run this process started (its manifest carries this
    process's `attempt` token) was stopped: "interrupted" (Ctrl-C, SIGTERM) or "failed".
    `reason`: bad input found mid-run (a diverging loss), which --resume would meet again;
    export and the gate repeat it instead of offering --resume.

    A manifest left at "running" would read as a live run to anyone who lists runs. One that
    another process wrote (a live run this process was refused, or an earlier crash) carries
    another token: left alone. The checkpoint the run can resume from is untouched.
    Returns whether this process had started the run (written its manifest) at all.
    """
    record = manifest_record(run)
    if record is None or record.get("attempt") != attempt:
        return False
    if record.get("status") == "running":
        reasons = {"reason": reason} if reason else {}
        # On a full disk this write fails too: the manifest then stays "running" with the
        # lock free, which is_being_trained reads as a run that ended without saying so.
        with contextlib.suppress(WriteFailed):
            write_json(run.manifest, {**record, "status": status, status: now_iso(), **reasons})
    return True


def is_being_trained(run: RunDir) -> bool:
    """Does a live process hold the run's lock? The kernel drops it when its holder dies, so
    a "running" manifest with the lock free is a run that crashed or was killed (SIGKILL, out
    of memory) before it could say so. Asked with a shared lock, opened read-only: a
    read-only copy of a killed run is told from a live one too (it was taken for one), and
    two gates asking at once do not see each other as the trainer. A lock that cannot be
    opened to find out counts as held: the manifest is then taken at its word."""
    if not run.lock.exists():
        return False
    try:
        release = shared_lock_or_refuse(run.lock, "held")
    except (UserError, OSError):
        return True
    release()
    return False


def check_still_in_place(run: RunDir) -> None:
    """Before a run in progress writes: is its folder still where it was claimed? A run
    folder moved or renamed while it trained took its lock along, and the next write made
    the folder anew: the run ended split in two, neither half exportable, and the command
    said it succeeded."""
    if not run.lock.is_file():
        raise UserError(
            f"{run.root}: the run directory was moved or removed while the run trained (its "
            f"{run.lock.name} is gone), so the run stops here; put the folder back at "
            f"{run.root} and continue it with --resume, or start it again"
        )


def lock_run(run: RunDir) -> FileLock:
    """The run's lock, taken without waiting; one line if another process holds it."""
    busy = (
        f"{run.root}: another process is training this run now (it holds {run.lock.name}); "
        "wait for it to end, or set output.name to start a new one"
    )
    try:
        return lock_or_refuse(run.lock, busy)
    except OSError as error:
        raise UserError(
            f"{run.lock}: cannot lock the run directory ({error.strerror}); make "
            f"{run.root} writable, or set another output.dir to start a new run there"
        ) from None
