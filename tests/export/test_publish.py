"""Publishing an export is crash-consistent: a process SIGKILLed at any step of putting a
finished export in place leaves either the previous export whole, or the new one complete or
completable, and the gate never judges a mix of the two.

Real exports of a real digits run (the previous one with --fp16 and a teacher, the new one
--no-teacher, so that publishing also removes files); a child process publishes and SIGKILLs
itself before its k-th file operation, for every k until it gets through."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.errors import UserError
from compressor.gate import evaluate_gate
from compressor.io import file_sha256
from export.publish import PUBLISHING_PREFIX, REPORT_JSON, STAGING_PREFIX, finish_interrupted
from tests.cli_helpers import run_cli
from tests.export.helpers import QUICK, invoke, one_error_line, report_of

# Publishes argv[1] (a staging folder) into argv[2] (export/), SIGKILLed before the file
# operation numbered argv[3]: every rename, removal and folder removal counts, the journal's
# atomic write included.
_KILLED_PUBLISHER = """
import os, shutil, signal, sys
from pathlib import Path

from export.publish import publish

left = int(sys.argv[3])

def counted(operation):
    def step(*args, **kwargs):
        global left
        if left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        left -= 1
        return operation(*args, **kwargs)
    return step

os.replace = counted(os.replace)
Path.unlink = counted(Path.unlink)
shutil.rmtree = counted(shutil.rmtree)
publish(Path(sys.argv[1]), Path(sys.argv[2]), keep=None)
"""


@pytest.fixture(scope="module")
def exports(exported_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The run with its previous export (student, student.fp16, teacher), and a copy of it
    whose export was made again with --no-teacher: the new export to publish."""
    folder = tmp_path_factory.mktemp("publish")
    previous = Path(shutil.copytree(exported_run, folder / "run"))
    new = Path(shutil.copytree(exported_run, folder / "new"))
    invoke("export", str(new), "--no-teacher", *QUICK)
    return previous, new


def _files_match_report(run: Path) -> None:
    """Every file the export report names inside the run is there, with its recorded sha256."""
    for row in report_of(run)["results"]:
        if row["file"] is not None and row["file"].startswith("export/"):
            assert file_sha256(run / row["file"]) == row["sha256"], row["file"]


def _stage(new: Path, run: Path) -> Path:
    """The new export's files, as export_run leaves them in its staging folder."""
    staging = run / "export" / f"{STAGING_PREFIX}killed"
    staging.mkdir()
    for path in (new / "export").iterdir():
        if path.is_file() and path.name != ".lock":
            shutil.copy(path, staging / path.name)
    return staging


def _publish_killed_at(step: int, staging: Path, run: Path) -> int:
    process = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISHER, str(staging), str(run / "export"), str(step)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode in (0, -signal.SIGKILL), process.stderr
    return process.returncode


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_kill_at_any_step_of_publishing_leaves_an_export_whole_or_completable(
    exports: tuple[Path, Path], tmp_path: Path
) -> None:
    previous, new = exports
    previous_report = (previous / "export" / REPORT_JSON).read_bytes()
    new_report = (new / "export" / REPORT_JSON).read_bytes()
    outcomes = []
    step = 0
    while True:
        run = Path(shutil.copytree(previous, tmp_path / f"killed-at-{step}"))
        staging = _stage(new, run)
        code = _publish_killed_at(step, staging, run)
        report = run / "export" / REPORT_JSON
        try:
            evaluate_gate(run)
            # The gate judges only a whole export: the previous one, or the new one complete.
            assert report.read_bytes() in (previous_report, new_report)
            _files_match_report(run)
            outcomes.append("previous" if report.read_bytes() == previous_report else "new")
        except UserError as error:
            assert error.lines == [
                f"{run / 'export'}: an export of this run stopped while putting its files "
                "in place (killed, or a file it could not replace; "
                f"{PUBLISHING_PREFIX}killed holds the rest), so they are part old, part new; "
                f"re-export with `compress export {run}`, which completes that one first"
            ]
            outcomes.append("refused")
        # What the next export does first, holding the export lock.
        finish_interrupted(run / "export")
        shutil.rmtree(staging, ignore_errors=True)
        _files_match_report(run)
        if outcomes[-1] != "previous":  # past the commit point: the new export, complete
            assert report.read_bytes() == new_report
            assert not (run / "export" / "teacher.onnx").exists()
            assert not (run / "export" / "student.fp16.onnx").exists()
        assert not list((run / "export").glob(".p*"))
        evaluate_gate(run)
        if code == 0:
            break
        step += 1
    # Killed before committing, in the middle of the renames, and after the report was in.
    assert outcomes[0] == "previous" and "refused" in outcomes and outcomes[-1] == "new"
    assert step >= 6, outcomes


def test_after_a_kill_while_publishing_the_gate_says_so_and_the_export_repairs_it(
    exports: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after the first of the new files is in place: the gate refuses in one line that
    names the command; that command puts the killed export in place, then makes its own."""
    previous, new = exports
    run = Path(shutil.copytree(previous, tmp_path / "run"))
    assert _publish_killed_at(4, _stage(new, run), run) == -signal.SIGKILL
    assert not (run / "export" / REPORT_JSON).exists()
    line = one_error_line(run_cli(capsys, "gate", str(run)))
    assert "stopped while putting its files in place (killed, or a file it" in line
    assert line.endswith(f"re-export with `compress export {run}`, which completes that one first")

    result = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert result.code == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())  # the console wraps long lines
    assert "put in place the export that was killed while publishing it" in said
    # Finishing the killed publish drops the previous export's files, and names them.
    finished = said.split("put in place the export that was killed while publishing it")[1]
    assert finished.startswith(", and removed the previous export's ")
    assert "student.fp16.onnx" in finished and "teacher.onnx" in finished
    assert sorted(os.listdir(run / "export")) == [
        ".lock",
        "export_report.html",
        "export_report.json",
        "export_report.md",
        "student.onnx",
    ]
    _files_match_report(run)
    evaluate_gate(run)


def test_an_export_says_which_files_of_the_previous_one_it_removed(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An fp32 re-export after `--fp16` drops student.fp16.onnx (no stale model ships), and a
    file that shipped before must not vanish unnoticed."""
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    result = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert result.code == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("removed ")]
    assert len(said) == 1 and "student.fp16.onnx" in said[0] and "teacher.onnx" in said[0]
    assert not (run / "export" / "student.fp16.onnx").exists()
    again = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert again.code == 0 and "removed " not in again.stdout


def test_an_export_folder_that_is_a_link_is_refused_and_its_target_untouched(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crafted run directory (a CI artifact): followed, the export wrote into the folder
    linked to and removed the model files there its report names."""
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    outside = tmp_path / "outside"
    (run / "export").rename(outside)
    (run / "export").symlink_to(outside)
    before = {path.name: path.read_bytes() for path in outside.iterdir() if path.is_file()}
    result = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert result.code == 2
    assert one_error_line(result) == (
        f"error: {run / 'export'}: a link (to {outside}), not a folder of the run; the export "
        "writes and removes files in it: replace the link with a folder"
    )
    assert {path.name: path.read_bytes() for path in outside.iterdir() if path.is_file()} == (
        before
    )


def test_a_model_file_of_the_users_own_in_export_is_never_removed(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's own student.int8.onnx, validated with --student-onnx, was deleted by the next
    plain export as "the previous export's" file: it is only the files an export wrote, as its
    report records them, that the next one removes."""
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    own = run / "export" / "student.int8.onnx"
    shutil.copy(run / "export" / "student.onnx", own)
    before = own.read_bytes()
    given = run_cli(capsys, "export", str(run), "--student-onnx", str(own), *QUICK)
    assert given.code == 0, given.stderr
    assert report_of(run)["onnx_files"] == ["teacher.onnx"]  # the student was given
    again = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert again.code == 0, again.stderr
    assert own.read_bytes() == before
    removed = [line for line in again.stdout.splitlines() if line.startswith("removed ")]
    assert len(removed) == 1 and removed[0].startswith(
        "removed the previous export's teacher.onnx,"
    )


@pytest.mark.parametrize(
    "journal",
    [None, "{}", "not json", '{"files": ["../recipe.yaml"]}', '{"files": ["export_report.json"]}'],
)
def test_a_damaged_publish_journal_is_one_line_and_the_previous_report_stays(
    exports: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    journal: str | None,
) -> None:
    """An edited (or lost) publish.json crashed the export with a KeyError after it had
    removed the previous report; the record is checked before anything is moved."""
    previous, _ = exports
    run = Path(shutil.copytree(previous, tmp_path / "run"))
    folder = run / "export" / f"{PUBLISHING_PREFIX}edited"
    folder.mkdir()
    shutil.copy(run / "export" / REPORT_JSON, folder / REPORT_JSON)
    if journal is not None:
        (folder / "publish.json").write_text(journal, encoding="utf-8")
    before = (run / "export" / REPORT_JSON).read_bytes()
    result = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    if journal is not None and "export_report" in journal:  # whole, "keep" left out: finished
        assert result.code == 0, result.stderr
        return
    line = one_error_line(result)
    assert line == (
        f"error: {folder / 'publish.json'}: missing or damaged, so the files of the export "
        f"killed while publishing cannot be put in place; remove {folder} and export the run "
        "again"
    )
    assert (run / "export" / REPORT_JSON).read_bytes() == before
    shutil.rmtree(folder)
    assert run_cli(capsys, "export", str(run), "--no-teacher", *QUICK).code == 0
