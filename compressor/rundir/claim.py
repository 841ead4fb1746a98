"""Starting a run: refuse, before anything is written, what would clobber an earlier run or
resume a missing one; then claim the directory, its lock held until the run ends."""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from compressor.errors import UserError
from compressor.io import file_in_the_way, is_scratch_name, remove_scratch_files
from compressor.recipe.sections import MAX_RUN_NAME_BYTES
from compressor.rundir.layout import RunDir, has_checkpoint, holds_run, manifest_record
from compressor.rundir.set_aside import (
    check_set_aside_free,
    refuse_while_exporting,
    set_aside_note,
    set_aside_only_note,
    set_aside_replaced_run,
)
from compressor.rundir.status import lock_run


def check_run_dir(run: RunDir, *, resume: bool, overwrite: bool) -> None:
    """Refuse, without writing anything, to clobber an earlier run, resume a missing one, or
    touch one another process is training."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    _check_no_file_in_the_way(run)
    if not overwrite:  # --overwrite sets the whole directory aside, whatever it holds
        _check_no_folder_in_the_way(run)
    if overwrite or not run.root.exists():  # a run already there keeps its name
        _check_name_fits(run)
    _check_not_a_folder_of_the_users(run)
    if overwrite:  # before the data is read and the teacher scored, not after
        _check_not_a_link(run)
        check_set_aside_free(run)
    if run.lock.exists():
        lock_run(run).release()
    _check_run_state(run, resume=resume, overwrite=overwrite)


def check_run_dir_can_be_made(run: RunDir) -> None:
    """What would stop any run of a recipe at its start, whatever the run directory holds
    and whichever flags are given: a file where a folder of its path must be, a name too
    long. For `compress recipe validate`, which says "valid" only if the run can start."""
    _check_no_file_in_the_way(run)
    if not run.root.exists():
        _check_name_fits(run)


def check_inputs_outside_run(
    run: RunDir, inputs: dict[str, Path | None], source: str, *, overwrite: bool
) -> None:
    """Refuse an input (the teacher's checkpoint, the data) that the run would destroy: a file
    it writes, or under --overwrite anything in its directory, which is set aside and deleted
    once the new run completes. A teacher read from the run it is distilled into would be
    gone, its student.pt replaced by the new student."""
    root = run.root.resolve()
    written = {path.resolve() for path in run.files}
    for field, path in inputs.items():
        if path is None:
            continue
        resolved = path.resolve()
        inside = resolved == root or root in resolved.parents
        if resolved in written or (overwrite and inside):
            how = "--overwrite replaces" if overwrite else "writes"
            raise UserError(
                f"{source}: {field}: {path} is in {run.root}, which this run {how}; copy it out "
                "of the run directory and point the recipe there, or set output.name to start a "
                "new run"
            )


def _check_not_a_link(run: RunDir) -> None:
    """--overwrite sets the old run aside by renaming its folder: a run directory that is a
    link (to a larger disk) would have the link renamed and deleted instead, the new run
    written beside it on this disk, and the old run left whole behind the link."""
    if run.root.is_symlink():
        target = run.root.readlink()
        raise UserError(
            f"{run.root}: a link (to {target}), which --overwrite would replace by a folder "
            f"here, leaving the old run at {target}; to train it again, remove both the link "
            "and that run and run without --overwrite (to keep runs on another disk, link "
            "output.dir instead of a run)"
        )


def _check_no_file_in_the_way(run: RunDir) -> None:
    """A file where the run directory, or a folder above it, should be: named, before the
    data is read. mkdir's own words ('Not a directory', 'File exists') name neither."""
    blocker = file_in_the_way(run.checkpoint)  # the folders above a run file: root included
    if blocker is not None:
        raise UserError(
            f"{blocker}: a file where the run directory {run.root} needs a folder; move it "
            "away or choose another output.dir"
        )


def _check_not_a_folder_of_the_users(run: RunDir) -> None:
    """A folder of the user's that output.dir/output.name happens to name (a project folder;
    a link to one): a run wrote its recipe.yaml, manifest.json and reports over theirs, and
    --overwrite, finding no run worth setting aside, emptied it without a word. Refused
    unless a run started there (a checkpoint, or a manifest.json a run wrote: web projects
    have one too), or it holds nothing but what a run writes, its checkpoints/ and export/
    folders empty (made as a run is claimed, before its manifest)."""
    record = manifest_record(run) or {}
    if (
        not run.root.is_dir()
        or run.checkpoint.exists()
        or {"status", "recipe_sha256"} <= set(record)
    ):
        return
    ours = {path.name for path in run.files} | {run.lock.name, run.replacing.name}
    made_at_claim = ("checkpoints", "export")
    found = [entry for entry in sorted(run.root.iterdir()) if entry.name not in made_at_claim]
    for name in made_at_claim:
        folder = run.root / name
        if folder.is_dir():
            found += sorted(folder.iterdir())
        elif folder.exists():
            found.append(folder)
    for entry in found:
        if entry.name not in ours and not is_scratch_name(entry.name):
            raise UserError(
                f"{run.root}: holds no run (no checkpoint, no manifest a run wrote), but "
                f"{entry.relative_to(run.root)}; a run is written in a folder of its own: move "
                "this one away, or set output.name to name the run"
            )


def _check_name_fits(run: RunDir) -> None:
    """A name too long to set aside trains once, then crashes the --overwrite that would
    train it again: refused before anything is written."""
    size = len(os.fsencode(run.root.name))  # a name from the command line may not be UTF-8
    if size > MAX_RUN_NAME_BYTES:
        raise UserError(
            f"{run.root}: the run name is {size} bytes long; a folder name holds 255, and "
            f"--overwrite adds '.replaced': keep it to {MAX_RUN_NAME_BYTES} (output.name, or the "
            "recipe file's name)"
        )


def _check_no_folder_in_the_way(run: RunDir) -> None:
    """A folder where the run writes one of its files would fail the run at its first epoch,
    or its last, with 'Is a directory': named before the data is read."""
    for path in run.files:
        if path.is_dir():
            raise UserError(
                f"{path}: a folder where the run writes its {path.name}; move it away, or "
                "start the run over with --overwrite"
            )


def _check_run_state(run: RunDir, *, resume: bool, overwrite: bool) -> None:
    """What the run directory holds allows this start: no run to clobber, a checkpoint to
    resume from."""
    started = holds_run(run)
    if resume and not has_checkpoint(run):
        # A run stopped before its first checkpoint can only start again; a finished one whose
        # checkpoints were removed has nothing left to do.
        if not run.root.exists():
            raise UserError(_no_run_to_resume(run))
        record = manifest_record(run)
        if record is not None and record.get("status") == "completed":
            instead = "the run has completed (--overwrite would train it again from scratch)"
        elif started:
            instead = "start it again with --overwrite"
        else:
            instead = "drop --resume"
        raise UserError(f"{run.root}: nothing to resume (no checkpoints/last.pt); {instead}")
    if started and not (resume or overwrite):
        record = manifest_record(run) or {}
        status, reason = record.get("status"), record.get("reason")
        if status == "completed":
            held = "a completed run; use --overwrite to train it again"
        elif status == "failed" and isinstance(reason, str):
            # Stopped on bad input (a diverging loss): a resume, with the same recipe, meets
            # it again; the recipe is changed and the run started over.
            first = reason.splitlines()[0].split("; ")[0] if reason.strip() else "no details"
            held = f"a run that failed on its input ({first}); fix that and use --overwrite"
        elif has_checkpoint(run):
            held = "an unfinished run; use --resume to continue it, --overwrite to replace it"
        else:
            held = "a run stopped before its first checkpoint; use --overwrite to start it again"
        # An --overwrite that has not completed: where the run it replaced is, how to go back.
        note = "" if status == "completed" else set_aside_note(run)
        raise UserError(
            f"{run.root} already holds {held}, or set output.name to start a new one{note}"
        )
    if overwrite:
        checked = refuse_while_exporting(run)
        if checked is not None:
            checked.release()


def _no_run_to_resume(run: RunDir) -> str:
    """--resume where no run folder is: typically a relative output.dir read from another
    working folder than the run was started in, where "drop --resume" would start a new run
    in the wrong place."""
    where = f"{run.root}: no such run to resume"
    aside = set_aside_only_note(run)
    if run.root.is_absolute():
        return f"{where}; check output.dir and output.name, or drop --resume to start it{aside}"
    return (
        f"{where} (output.dir is read from the working folder, here {Path.cwd()}); run the "
        f"command from the folder the run was started in, or drop --resume to start it here{aside}"
    )


def claim_run_dir(run: RunDir, *, resume: bool, overwrite: bool) -> FileLock:
    """Create the run directory, refusing to clobber an earlier run by accident; return the
    run's lock, held: the caller releases it when training ends, and until then any other
    process's claim is refused (two trainings of one run would overwrite each other's
    checkpoints, and an --overwrite would delete a live run's).

    `--overwrite` sets the run it replaces aside (`set_aside_replaced_run`) and starts from an
    empty folder: none of the old run's files can be read as the new run's.
    """
    check_run_dir(run, resume=resume, overwrite=overwrite)
    # Both folders a run writes, before an epoch is spent: checkpoints/ may exist read-only.
    for folder in (run.root, run.checkpoint.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"{folder}: cannot write the run directory ({error.strerror}); make it "
                "writable or choose another output.dir"
            ) from None
    lock = lock_run(run)
    try:
        # Again, holding the lock: another process may have claimed the run since the check.
        _check_run_state(run, resume=resume, overwrite=overwrite)
        if overwrite:
            lock = set_aside_replaced_run(run, lock)
        for folder in (run.root, run.checkpoint.parent):  # left by a write that was killed
            remove_scratch_files(folder)
    except BaseException:
        lock.release()
        raise
    return lock
