"""The run directory: the contract between distillation, export and the gate.

```
runs/<name>/
  recipe.yaml  manifest.json  checkpoints/last.pt  student.pt  metrics.jsonl
  report.json|md|html  export/  .lock (held while a process trains the run)
runs/<name>.replaced/   the run an --overwrite replaces, until the new one completes
```
Everything a later stage needs is read from here, so the export box needs no training code.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from compressor.errors import UserError
from compressor.io import file_sha256, lock_or_refuse, previous_of, write_json
from compressor.provenance import now_iso, trained_recipe_sha256
from compressor.recipe import Recipe, load_recipe


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def student(self) -> Path:
        return self.root / "student.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def report(self, suffix: str) -> Path:
        return self.root / f"report.{suffix}"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def set_aside(self) -> Path:
        """Where `--overwrite` keeps the run it replaces until the new one completes."""
        return self.root.with_name(f"{self.root.name}.replaced")


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


def run_dir_for(recipe: Recipe, recipe_path: Path) -> RunDir:
    name = recipe.output.name or recipe_path.stem
    return RunDir(Path(recipe.output.dir) / name)


def training_command(run_recipe: Recipe) -> str:
    """`train` or `distill`: which command made a run, read from the recipe.yaml it holds
    (`compress train` drops the teacher from the recipe it stores, `distill` needs one)."""
    return "train" if run_recipe.teacher is None else "distill"


def run_command(run: RunDir, recipe: Recipe) -> str:
    """`compress train|distill <recipe>` for messages about a run: the recipe file that
    started it (recorded in its manifest as an absolute path) while that file is still there,
    so the command pastes as it is, else the placeholder RECIPE. A recipe's relative
    output.dir is resolved against the folder training ran in, so from another folder the
    command first changes to that one."""
    record = _manifest_record(run) or {}
    path, workdir, root = (record.get(key) for key in ("recipe_file", "workdir", "run_root"))
    placeholder = f"compress {training_command(recipe)} RECIPE"
    # A run moved or copied elsewhere: that recipe, from that folder, trains the original.
    if not all(isinstance(value, str) for value in (path, workdir, root)):
        return placeholder
    if root != str(run.root.resolve()) or not Path(path).is_file() or not Path(workdir).is_dir():
        return placeholder
    command = f"compress {training_command(recipe)} {shlex.quote(path)}"
    if Path(workdir) != Path.cwd():
        return f"cd {shlex.quote(workdir)} && {command}"
    return command


def repair_command(run: RunDir, recipe: Recipe) -> str:
    """How to get back a finished run's lost files: its last checkpoint writes them again in
    seconds (--resume); without one, only training again (--overwrite) does."""
    command = run_command(run, recipe)
    if has_checkpoint(run):
        return f"`{command} --resume` (it writes them again from the last checkpoint)"
    return f"`{command} --overwrite`"


def read_completed_run(run: RunDir) -> tuple[Recipe, dict[str, Any]]:
    """The recipe and manifest of a finished run, its student.pt present: where `compress
    export` and `gate` start.

    Only a "completed" manifest says the files beside it are whole: a run that is still
    going, or was stopped, has written some of them or none, and must not be exported or
    gated.
    """
    where = "give the folder `compress train` or `distill` wrote (runs/<name>)"
    if not run.root.exists():
        raise UserError(f"{run.root}: no such run directory; {where}")
    if not run.root.is_dir():
        raise UserError(f"{run.root}: a file, not a run directory; {where}")
    if not run.recipe.is_file():
        raise UserError(f"{run.root}: not a run directory (no recipe.yaml in it)")
    recipe = load_recipe(run.recipe, started=True)
    command = run_command(run, recipe)
    # Resumed from its last checkpoint, or started again when it stopped before the first.
    again = f"`{command} {'--resume' if has_checkpoint(run) else '--overwrite'}`"
    rebuild = repair_command(run, recipe)
    record = _manifest_record(run)
    if record is None or not isinstance(record.get("recipe_sha256"), str):
        raise UserError(
            f"{run.manifest}: missing or unreadable; the run directory is incomplete: repair "
            f"it with {rebuild}"
        )
    status = record.get("status")
    if status == "running" and not is_being_trained(run):
        raise UserError(
            f"{run.root}: the run stopped without finishing: manifest.json says running, but no "
            f"process is training it (it crashed or was killed); continue it with "
            f"{again}{set_aside_note(run)}"
        )
    if status == "running":
        raise UserError(
            f"{run.root}: the run is still being trained (a process holds its .lock); wait "
            "for it to end (a read-only copy of a run that stopped reads the same: copy it "
            "somewhere writable)"
        )
    reason = record.get("reason")
    if status == "failed" and isinstance(reason, str):
        raise UserError(f"{run.root}: the run failed on its input: {reason}{set_aside_note(run)}")
    if status != "completed":
        state = _STOPPED.get(status) or (
            f"'s status is {status!r}" if isinstance(status, str) else " has no status"
        )
        raise UserError(
            f"{run.root}: the run{state}, not completed (manifest.json); finish it with "
            f"{again}{set_aside_note(run)}"
        )
    if not run.student.is_file():
        raise UserError(
            f"{run.root}: the run has no student.pt although it completed; the run directory "
            f"is incomplete: repair it with {rebuild}"
        )
    recorded = record.get("trained_recipe_sha256")  # absent from runs made before it was
    if isinstance(recorded, str) and trained_recipe_sha256(run.recipe) != recorded:
        raise UserError(
            f"{run.recipe}: changed since the run was trained, beyond where files are "
            "(data.root, data.download, teacher.checkpoint) and the output, export and gate "
            "sections; export and the gate need the run's own recipe: put it back, or train "
            f"again with `{command} --overwrite`"
        )
    recorded = record.get("student_sha256")
    if isinstance(recorded, str) and file_sha256(run.student) != recorded:
        raise UserError(
            f"{run.student}: not the student this run trained (manifest.json records another "
            f"sha256); put the run's own student.pt back, or repair it with {rebuild}"
        )
    return recipe, record


def check_same_teacher(run: RunDir, recipe: Recipe, weights_sha256: str, *, fix: str) -> None:
    """Refuse a teacher other than the one the run was distilled from (manifest.json records
    its weights' hash; runs made before it did record nothing, and pass). `fix` says what
    the caller can do about it."""
    recorded = (_manifest_record(run) or {}).get("teacher_weights_sha256")
    if not isinstance(recorded, str) or recorded == weights_sha256:
        return
    teacher = recipe.teacher
    hashes = f"its weights hash to {weights_sha256[:12]}…, manifest.json records {recorded[:12]}…"
    if teacher is not None and teacher.checkpoint is None:
        # No file changed: what builds the teacher builds other weights than it did.
        raise UserError(
            f"{teacher.builder()}: built another teacher than the one "
            f"{run.root} was distilled from ({hashes}); an entrypoint without "
            "teacher.checkpoint must build the same weights every time (load them, or seed "
            "their initialisation), or name the weights in teacher.checkpoint"
        )
    checkpoint = teacher.checkpoint if teacher is not None else None
    raise UserError(
        f"{checkpoint or 'the teacher'}: not the teacher {run.root} was distilled from "
        f"({hashes}); {fix}{set_aside_file_note(checkpoint) if checkpoint else ''}"
    )


# How a run that no process is training stopped, as manifest.json's status says.
_STOPPED = {"interrupted": " was interrupted", "failed": " failed"}


def _manifest_record(run: RunDir) -> dict[str, Any] | None:
    """manifest.json as a mapping; None when it is missing, unreadable or not a mapping."""
    try:
        record = json.loads(run.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def has_checkpoint(run: RunDir) -> bool:
    """Can the run be resumed: is there a checkpoint, or the one before it?"""
    return run.checkpoint.exists() or previous_of(run.checkpoint).exists()


def holds_run(run: RunDir) -> bool:
    """Has a run started here (finished or not)? Then starting afresh would write over it."""
    return run.manifest.exists() or run.checkpoint.exists()


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
    record = _manifest_record(run)
    if record is None or record.get("attempt") != attempt:
        return False
    if record.get("status") == "running":
        reasons = {"reason": reason} if reason else {}
        write_json(run.manifest, {**record, "status": status, status: now_iso(), **reasons})
    return True


def is_being_trained(run: RunDir) -> bool:
    """Does a live process hold the run's lock? The kernel drops it when its holder dies, so
    a "running" manifest with the lock free is a run that crashed or was killed (SIGKILL, out
    of memory) before it could say so. A lock that cannot be taken to find out (a read-only
    copy of the run) counts as held: the manifest is then taken at its word."""
    if not run.lock.exists():
        return False
    try:
        _lock(run).release()
    except UserError:
        return True
    return False


def check_run_dir(run: RunDir, *, resume: bool, overwrite: bool) -> None:
    """Refuse, without writing anything, to clobber an earlier run, resume a missing one, or
    touch one another process is training."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if run.lock.exists():
        _lock(run).release()
    _check_run_state(run, resume=resume, overwrite=overwrite)


def _check_run_state(run: RunDir, *, resume: bool, overwrite: bool) -> None:
    """What the run directory holds allows this start: no run to clobber, a checkpoint to
    resume from."""
    started = holds_run(run)
    if resume and not has_checkpoint(run):
        # A run stopped before its first checkpoint can only start again; a finished one whose
        # checkpoints were removed has nothing left to do.
        if not run.root.exists():
            raise UserError(_no_run_to_resume(run))
        record = _manifest_record(run)
        if record is not None and record.get("status") == "completed":
            instead = "the run has completed (--overwrite would train it again from scratch)"
        elif started:
            instead = "start it again with --overwrite"
        else:
            instead = "drop --resume"
        raise UserError(f"{run.root}: nothing to resume (no checkpoints/last.pt); {instead}")
    if started and not (resume or overwrite):
        status = (_manifest_record(run) or {}).get("status")
        if status == "completed":
            held = "a completed run; use --overwrite to train it again"
        elif has_checkpoint(run):
            held = "an unfinished run; use --resume to continue it, --overwrite to replace it"
        else:
            held = "a run stopped before its first checkpoint; use --overwrite to start it again"
        raise UserError(f"{run.root} already holds {held}, or set output.name to start a new one")
    if overwrite:
        checked = _refuse_while_exporting(run)
        if checked is not None:
            checked.release()


def _no_run_to_resume(run: RunDir) -> str:
    """--resume where no run folder is: typically a relative output.dir read from another
    working folder than the run was started in, where "drop --resume" would start a new run
    in the wrong place."""
    where = f"{run.root}: no such run to resume"
    if run.root.is_absolute():
        return f"{where}; check output.dir and output.name, or drop --resume to start it"
    return (
        f"{where} (output.dir is read from the working folder, here {Path.cwd()}); run the "
        "command from the folder the run was started in, or drop --resume to start it here"
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
    lock = _lock(run)
    try:
        # Again, holding the lock: another process may have claimed the run since the check.
        _check_run_state(run, resume=resume, overwrite=overwrite)
        if overwrite:
            set_aside_replaced_run(run)
    except BaseException:
        lock.release()
        raise
    return lock


def set_aside_replaced_run(run: RunDir) -> None:
    """`--overwrite`, holding the run's lock: move what the run directory holds to
    `<name>.replaced` beside it instead of deleting it, so a new run that is interrupted, or
    fails, costs nothing already written; `discard_replaced_run` removes it once the new run
    completes. Renames only: no copy, no extra disk.

    What is kept is the last run that can be gone back to: an earlier --overwrite's set-aside
    run stays while the run it was replaced by has not completed (that unfinished run is what
    goes), and is itself replaced by a completed run.
    """
    # A marker here came back with the run from a go-back; the new one is written in its place.
    entries = [e for e in run.root.iterdir() if e.name not in (run.lock.name, SET_ASIDE_MARK)]
    aside = run.set_aside
    if aside.exists() and not _holds_set_aside(run):
        raise UserError(
            f"{aside}: in the way of --overwrite, which keeps the run it replaces there until "
            "the new one completes; move or rename that folder"
        )
    completed = (_manifest_record(run) or {}).get("status") == "completed"
    # Nothing to go back to: a run stopped before its first checkpoint is only its recipe.
    worth_keeping = completed or has_checkpoint(run)
    with ExitStack() as held:
        export_lock = _refuse_while_exporting(run)
        if export_lock is not None:
            held.callback(export_lock.release)
        keep_aside = (aside.exists() and not completed) or not worth_keeping
        _move_aside(run, entries, keep_aside=keep_aside)


def _refuse_while_exporting(run: RunDir) -> FileLock | None:
    """Take the run's export lock, or refuse: an --overwrite must not move export/ away from
    an export that is writing into it. Held by the caller while it moves the run; None when
    there is none, or it cannot be locked to find out (read-only: moving will say why)."""
    if not (run.export_dir / ".lock").exists():  # `compress export` holds it while it writes
        return None
    busy = (
        f"{run.root}: an export of this run is writing into {run.export_dir} now; wait "
        "for it to end, then --overwrite"
    )
    try:
        return lock_or_refuse(run.export_dir / ".lock", busy)
    except OSError:
        return None


def _move_aside(run: RunDir, entries: list[Path], *, keep_aside: bool) -> None:
    aside = run.set_aside
    try:
        (run.root / SET_ASIDE_MARK).unlink(missing_ok=True)
        if keep_aside:
            for entry in entries:
                _remove(entry)
        elif entries:
            if aside.exists():
                shutil.rmtree(aside)
            aside.mkdir()
            mark = _MARK_TEXT.format(root=run.root, time=now_iso())
            (aside / SET_ASIDE_MARK).write_text(mark, encoding="utf-8")
            for entry in entries:
                entry.rename(aside / entry.name)
        run.checkpoint.parent.mkdir(exist_ok=True)
    except OSError as error:
        raise UserError(
            f"{run.root}: cannot set the run it replaces aside in {aside} ({error.strerror}); "
            "make both writable, or set output.name to start a new run"
        ) from None


def discard_replaced_run(run: RunDir) -> bool:
    """The new run completed: the one its --overwrite set aside goes. Returns whether there
    was one."""
    if not _holds_set_aside(run):
        return False
    shutil.rmtree(run.set_aside, ignore_errors=True)
    return True


def _holds_set_aside(run: RunDir) -> bool:
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
    if not _holds_set_aside(run):
        return ""
    return (
        f" (the run it replaced is kept in {run.set_aside} until it completes; to go back: "
        f"{_go_back_command(run)})"
    )


def set_aside_file_note(path: Path | str) -> str:
    """For messages about a file of another run (a teacher: runs/teacher/student.pt) that is
    missing or not the one expected because that run is being replaced by an --overwrite:
    where the file it had is, and how to go back; empty otherwise."""
    path = Path(path)
    owner = RunDir(path.parent)
    kept = owner.set_aside / path.name
    if not _holds_set_aside(owner) or not kept.is_file():
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


def _lock(run: RunDir) -> FileLock:
    """The run's lock, taken without waiting; one line if another process holds it."""
    busy = (
        f"{run.root}: another process is training this run now (it holds {run.lock.name}); "
        "wait for it to end, or set output.name to start a new one"
    )
    try:
        return lock_or_refuse(run.lock, busy)
    except OSError as error:
        raise UserError(
            f"{run.lock}: cannot lock the run directory ({error.strerror}); "
            "choose another output.dir"
        ) from None
