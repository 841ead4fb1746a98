"""Putting a finished export in place of the previous one, so that a kill at any moment leaves
export/ either as it was or recoverable to the new export, never silently mixed.

An export is made whole in a staging folder (export/.partial-*/, reports included). Replacing
the previous export's files takes several renames, and no single rename covers them, so
publishing is a redo log:

1. The staging folder records the names it holds (`publish.json`) and is renamed to
   export/.publishing-*: the commit point. A kill before it leaves the previous export as it
   was; the staging folder is removed by the next export.
2. The old JSON report (what the gate reads) goes first, so no report ever sits beside files
   it did not check; the new files replace the old; the files the previous export wrote and
   this one did not (no --fp16 now, --no-teacher) go, so no stale model ships; the new report
   comes last; the folder goes. Which files those are is read from the previous report
   (`onnx_files`) before the commit point and kept in the journal: a file of the user's own
   in export/, even one named student.int8.onnx, is never the previous export's.

A kill during step 2 (SIGKILL, power lost: Ctrl-C and SIGTERM are held off) leaves the folder
with the new report and the files not yet moved. The next export of the run finishes the job
before it starts its own (`finish_interrupted`), and until then the gate finds the folder
(`unfinished_publish`) and refuses in one line that says so. Every step can be repeated, so a
kill while finishing is finished in turn.

No torch here: the gate imports this module.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from compressor.errors import UserError
from compressor.interrupt import interrupts_ignored
from compressor.io import loads_json, write_json

MODELS = ("student", "teacher")  # what an export holds; each file is named after its model
OUR_FILES = tuple(f"{model}{kind}.onnx" for model in MODELS for kind in ("", ".fp16", ".int8"))
REPORT_NAME = "export_report"
LOCK_NAME = ".lock"  # export/.lock: held by the export in progress, and by a gate reading it
REPORT_JSON = f"{REPORT_NAME}.json"
STAGING_PREFIX = ".partial-"  # export/.partial-*/: an export in progress
PUBLISHING_PREFIX = ".publishing-"  # export/.publishing-*/: an export being put in place
JOURNAL = "publish.json"  # inside it: the names it brought, and the file to keep


def publish(staging: Path, export_dir: Path, keep: Path | None) -> list[str]:
    """Swap the staged export, reports included, in for the previous one (module docstring).

    Only the model files the previous export wrote are removed, never `keep` (a
    --student-onnx file kept in export/); cached TensorRT engines and files of the user's own
    stay. Returns the names of the previous export's model files it removed, for the caller
    to say so: a file that shipped before (student.int8.onnx) must not vanish unnoticed.
    """
    names = sorted(path.name for path in staging.iterdir())
    kept = None if keep is None else keep.resolve()
    stale = [
        name
        for name in _previous_export_files(export_dir)
        if name not in names and (export_dir / name).resolve() != kept
    ]
    write_json(staging / JOURNAL, {"files": names, "stale": stale})
    with interrupts_ignored():
        folder = export_dir / staging.name.replace(STAGING_PREFIX, PUBLISHING_PREFIX, 1)
        try:
            os.replace(staging, folder)
        except OSError as error:
            raise UserError(
                f"{export_dir}: cannot put the new export in place ({_why(error)}); the "
                "previous export is as it was"
            ) from None
        try:
            return _finish(folder, export_dir)
        except OSError as error:
            # Past the commit point: what is left waits in the folder, as after a kill.
            raise UserError(
                f"{export_dir}: cannot put the new export in place ({_why(error)}); the rest "
                f"of it waits in {folder.name}: make export/ writable, then export the run "
                "again, which completes it first"
            ) from None


def _why(error: OSError) -> str:
    """A failed rename names the file it would replace, most often what blocks it (an
    immutable file), not the staged one, which the user never made."""
    if error.filename2:
        return f"{error.strerror}: cannot replace {error.filename2}"
    return f"{error.strerror}: {error.filename}" if error.filename else str(error.strerror)


def finish_interrupted(export_dir: Path) -> tuple[list[Path], list[str]]:
    """Complete every publish a killed export left halfway; the caller holds the export lock.
    Returns the folders it finished and the previous export's files it removed, for the
    caller to say so, as an export that is not killed names what it removed."""
    folders = sorted(export_dir.glob(f"{PUBLISHING_PREFIX}*"))
    removed: list[str] = []
    with interrupts_ignored():
        for folder in folders:
            removed += _finish(folder, export_dir)
    return folders, removed


def unfinished_publish(export_dir: Path) -> Path | None:
    """A publish a killed export left before its report was in place: export/ then holds
    some old files and some new ones, and no report describes them. (Once the report is in,
    what remains is an empty folder to remove: the new export is complete.)"""
    for folder in sorted(export_dir.glob(f"{PUBLISHING_PREFIX}*")):
        if (folder / REPORT_JSON).is_file():
            return folder
    return None


def _previous_export_files(export_dir: Path) -> list[str]:
    """The model files the export now in place wrote, as its report says. A report from
    before `onnx_files` was recorded names them in its results; no readable report, none."""
    try:
        report = loads_json((export_dir / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(report, dict):
        return []
    listed = report.get("onnx_files")
    if not isinstance(listed, list):
        rows = report.get("results")
        files = [row.get("file") for row in rows or [] if isinstance(row, dict)]
        listed = [Path(f).name for f in files if isinstance(f, str) and f.startswith("export/")]
    return sorted({name for name in listed if name in OUR_FILES})


def _finish(folder: Path, export_dir: Path) -> list[str]:
    """Step 2 of the module docstring, from wherever a kill stopped it; the stale files it
    removed."""
    report = folder / REPORT_JSON
    removed: list[str] = []
    if report.is_file():
        journal = _journal(folder)
        (export_dir / REPORT_JSON).unlink(missing_ok=True)
        for name in journal["files"]:
            if name != REPORT_JSON and (folder / name).is_file():
                os.replace(folder / name, export_dir / name)
        for name in journal.get("stale") or []:
            path = export_dir / name
            if path.is_file():
                path.unlink()
                removed.append(name)
        os.replace(report, export_dir / REPORT_JSON)
    shutil.rmtree(folder)
    return removed


def _journal(folder: Path) -> dict[str, Any]:
    """The folder's record of what it brings, checked before anything is moved: a missing or
    edited one would stop the publish halfway, after the previous report is gone."""
    try:
        journal = loads_json((folder / JOURNAL).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # ValueError: not JSON, or not UTF-8
        journal = None
    files = journal.get("files") if isinstance(journal, dict) else None
    stale = journal.get("stale") if isinstance(journal, dict) else None
    if not (
        isinstance(files, list)
        and all(isinstance(name, str) and name == Path(name).name for name in files)
        and (stale is None or (isinstance(stale, list) and all(n in OUR_FILES for n in stale)))
    ):
        raise UserError(
            f"{folder / JOURNAL}: missing or damaged, so the files of the export killed while "
            f"publishing cannot be put in place; remove {folder} and export the run again"
        )
    return journal
