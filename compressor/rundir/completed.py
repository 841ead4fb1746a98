"""Reading a finished run, as export, the gate and a resumed distillation do: refuse what is
not whole, or not the run's own, with the command that repairs it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from compressor.errors import UserError
from compressor.io import file_sha256
from compressor.provenance import trained_recipe_sha256
from compressor.recipe import Recipe, load_recipe
from compressor.rundir.layout import RunDir, has_checkpoint, manifest_record, training_command
from compressor.rundir.set_aside import set_aside_file_note, set_aside_note, set_aside_only_note
from compressor.rundir.status import is_being_trained

# How a run that no process is training stopped, as manifest.json's status says.
_STOPPED = {"interrupted": " was interrupted", "failed": " failed"}


def run_command(run: RunDir, recipe: Recipe) -> str:
    """`compress train|distill <recipe>` for messages about a run: the recipe file that
    started it (recorded in its manifest as an absolute path) while that file is still there,
    so the command pastes as it is, else the placeholder RECIPE. A recipe's relative
    output.dir is resolved against the folder training ran in, so from another folder the
    command first changes to that one."""
    record = manifest_record(run) or {}
    path, workdir, root = (record.get(key) for key in ("recipe_file", "workdir", "run_root"))
    placeholder = f"compress {training_command(recipe)} RECIPE"
    # A run moved or copied elsewhere: that recipe, from that folder, trains the original.
    if not (isinstance(path, str) and isinstance(workdir, str) and isinstance(root, str)):
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


def _continue_command(run: RunDir, command: str, record: dict[str, Any] | None) -> str:
    """How to finish a stopped run: resumed from its last checkpoint, or started again when
    it stopped before the first. A run torchrun trained resumes under torchrun: in one
    process it would go on only approximately (another process count), as the training
    command's own message says."""
    if not has_checkpoint(run):
        return f"`{command} --overwrite`"
    processes = (record or {}).get("processes")
    if not isinstance(processes, int) or processes < 2:
        return f"`{command} --resume`"
    folder, _, compress = command.rpartition(" && ")
    then = f"`{folder}`, then " if folder else ""
    return (
        f"{then}torchrun with its options as before ({processes} processes), running "
        f"`-m compressor {compress.removeprefix('compress ')} --resume`"
    )


def read_completed_run(run: RunDir) -> tuple[Recipe, dict[str, Any]]:
    """The recipe and manifest of a finished run, its student.pt present: where `compress
    export` and `gate` start.

    Only a "completed" manifest says the files beside it are whole: a run that is still
    going, or was stopped, has written some of them or none, and must not be exported or
    gated.
    """
    where = "give the folder `compress train` or `distill` wrote (runs/<name>)"
    try:
        exists = run.root.exists()
    except OSError as error:  # a name too long to look up, say
        raise UserError(f"{run.root}: cannot be read ({error.strerror}); {where}") from None
    if not exists:
        raise UserError(f"{run.root}: no such run directory; {where}{set_aside_only_note(run)}")
    if not run.root.is_dir():
        raise UserError(f"{run.root}: a file, not a run directory; {where}")
    if not run.recipe.is_file():
        raise UserError(f"{run.root}: not a run directory (no recipe.yaml in it)")
    recipe = load_recipe(run.recipe, started=True)
    command = run_command(run, recipe)
    record = manifest_record(run)
    again = _continue_command(run, command, record)
    rebuild = repair_command(run, recipe)
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
            "for it to end"
        )
    reason = record.get("reason")
    if status == "failed" and isinstance(reason, str):
        raise UserError(f"{run.root}: the run failed on its input: {reason}{set_aside_note(run)}")
    if status != "completed":
        if not isinstance(status, str):  # a list or a mapping cannot be looked up
            state = " has no status" if status is None else f"'s status is {status!r}"
        else:
            state = _STOPPED.get(status) or f"'s status is {status!r}"
        raise UserError(
            f"{run.root}: the run{state}, not completed (manifest.json); finish it with "
            f"{again}{set_aside_note(run)}"
        )
    if not run.student.is_file():
        raise UserError(
            f"{run.root}: the run has no student.pt although it completed; the run directory "
            f"is incomplete: copy student.pt from where the run was trained (a gate job needs "
            f"it beside the reports), or repair it with {rebuild}"
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
    recorded = (manifest_record(run) or {}).get("teacher_weights_sha256")
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
