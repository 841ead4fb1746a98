"""compressor/rundir/claim.py: refusing and claiming a run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compressor.errors import UserError
from compressor.rundir import (
    RunDir,
    check_inputs_outside_run,
    check_run_dir,
    claim_run_dir,
)
from tests.read_only import immutable
from tests.rundir.helpers import started_run


def test_a_started_run_is_refused_with_advice_for_its_state(tmp_path: Path) -> None:
    run = started_run(tmp_path / "run")
    with pytest.raises(UserError, match="an unfinished run; use --resume to continue it"):
        check_run_dir(run, resume=False, overwrite=False)
    run.manifest.write_text(json.dumps({"status": "completed"}))
    with pytest.raises(UserError, match="a completed run; use --overwrite to train it again"):
        check_run_dir(run, resume=False, overwrite=False)


def test_a_claimed_run_is_refused_to_everyone_else_until_released(tmp_path: Path) -> None:
    """The lock is an OS lock (flock): it is the second claim, not the process, that is
    refused, and it goes when the holder releases it or dies."""
    run = started_run(tmp_path / "run")
    held = claim_run_dir(run, resume=True, overwrite=False)
    for resume, overwrite in [(True, False), (False, True)]:
        with pytest.raises(UserError, match="another process is training this run now"):
            claim_run_dir(run, resume=resume, overwrite=overwrite)
    assert run.checkpoint.read_bytes() == b"old run"  # the refused --overwrite deleted nothing
    held.release()
    claim_run_dir(run, resume=True, overwrite=False).release()


def test_a_finished_run_without_checkpoints_is_not_sent_to_overwrite(tmp_path: Path) -> None:
    """--overwrite would train a completed run again from scratch: say it has completed."""
    run = started_run(tmp_path / "run")
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


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
def test_a_checkpoints_folder_that_cannot_be_written_is_refused_before_training(
    tmp_path: Path,
) -> None:
    """Found at the first checkpoint, it would cost an epoch and end in a traceback."""
    run = RunDir(tmp_path / "run")
    run.checkpoint.parent.mkdir(parents=True)
    with (
        immutable(run.checkpoint.parent),
        pytest.raises(UserError, match=r"checkpoints: cannot write the run directory"),
    ):
        claim_run_dir(run, resume=False, overwrite=False)


@pytest.mark.parametrize(
    "blocked",
    ["runs/run", "runs", "runs/run/checkpoints"],
    ids=["the run's folder", "a folder above", "its checkpoints folder"],
)
def test_a_file_where_the_run_directory_goes_is_named_before_anything_is_read(
    tmp_path: Path, blocked: str
) -> None:
    """mkdir's 'Not a directory' or 'File exists', with "make it writable", named neither
    the file nor a fix that works."""
    run = RunDir(tmp_path / "runs" / "run")
    blocker = tmp_path / blocked
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    with pytest.raises(UserError) as error:
        check_run_dir(run, resume=False, overwrite=False)
    assert str(error.value) == (
        f"{blocker}: a file where the run directory {run.root} needs a folder; move it away "
        "or choose another output.dir"
    )


@pytest.mark.parametrize(
    "name", ["metrics.jsonl", "student.pt", "report.html", "checkpoints/previous-last.pt"]
)
@pytest.mark.parametrize("resume", [False, True], ids=["start", "resume"])
def test_a_folder_where_the_run_writes_a_file_is_named_before_anything_is_read(
    tmp_path: Path, name: str, resume: bool
) -> None:
    """`--resume` over a metrics.jsonl that is a folder crashed with 'Is a directory' at the
    first epoch's line; a student.pt folder failed the run once trained."""
    run = started_run(tmp_path / "run")
    (run.root / name).unlink(missing_ok=True)
    (run.root / name).mkdir(parents=True)
    with pytest.raises(UserError) as error:
        check_run_dir(run, resume=resume, overwrite=False)
    assert str(error.value) == (
        f"{run.root / name}: a folder where the run writes its {Path(name).name}; move it "
        "away, or start the run over with --overwrite"
    )
    check_run_dir(run, resume=False, overwrite=True)


@pytest.mark.parametrize("linked", [False, True], ids=["folder", "link to a folder"])
def test_a_run_refuses_a_folder_of_the_users(tmp_path: Path, linked: bool) -> None:
    """output.dir/output.name naming a folder of the user's (`dir: .`, a name reused): a run
    wrote over its manifest.json, and --overwrite, finding no run worth setting aside,
    emptied it, whatever it held; through a link, the folder linked to."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text('{"name": "a web app"}')
    root = tmp_path / "runs" / "project"
    if linked:
        root.parent.mkdir()
        root.symlink_to(project)
    else:
        root = project
    for overwrite in (True, False):
        with pytest.raises(UserError) as error:
            claim_run_dir(RunDir(root), resume=False, overwrite=overwrite)
        assert str(error.value) == (
            f"{root}: holds no run (no checkpoint, no manifest a run wrote), but src; a run "
            "is written in a folder of its own: move this one away, or set output.name to "
            "name the run"
        )
    assert sorted(path.name for path in project.iterdir()) == ["manifest.json", "src"]


@pytest.mark.parametrize(
    ("theirs", "named"),
    [
        ("export/mymodel.onnx", "export/mymodel.onnx"),
        ("checkpoints/epoch10.ckpt", "checkpoints/epoch10.ckpt"),
        ("manifest.json", "src"),  # a manifest with a status, but none a run wrote
    ],
)
def test_a_folder_of_the_users_is_told_by_what_is_inside_a_run_s_names(
    tmp_path: Path, theirs: str, named: str
) -> None:
    """A user's export/ or checkpoints/ folder, or a manifest.json with a status of its own:
    taken for a run's, --overwrite emptied the folder."""
    root = tmp_path / "project"
    if theirs == "manifest.json":
        (root / "src").mkdir(parents=True)
    (root / theirs).parent.mkdir(parents=True, exist_ok=True)
    (root / theirs).write_text('{"status": "draft"}')
    with pytest.raises(UserError, match=f"but {named}; a run is written"):
        claim_run_dir(RunDir(root), resume=False, overwrite=True)
    assert (root / theirs).exists()


def test_overwrite_takes_a_folder_holding_only_what_a_run_writes(tmp_path: Path) -> None:
    """A run stopped before its manifest (claimed: its lock and checkpoints/ made)."""
    run = RunDir(tmp_path / "run")
    run.checkpoint.parent.mkdir(parents=True)
    run.lock.write_text("")
    (run.root / ".metrics.jsonl.abcd1234.tmp").write_text("")
    claim_run_dir(run, resume=False, overwrite=True).release()


def test_overwrite_refuses_a_run_directory_that_is_a_link(tmp_path: Path) -> None:
    """The link was renamed and deleted in the run's place: the new run went onto this disk,
    and the old one stayed whole behind the link, said to be removed."""
    target = started_run(tmp_path / "big-disk" / "run").root
    link = tmp_path / "runs" / "run"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(UserError) as error:
        check_run_dir(RunDir(link), resume=False, overwrite=True)
    assert str(error.value) == (
        f"{link}: a link (to {target}), which --overwrite would replace by a folder here, "
        f"leaving the old run at {target}; to train it again, remove both the link and that "
        "run and run without --overwrite (to keep runs on another disk, link output.dir "
        "instead of a run)"
    )
    assert link.is_symlink() and RunDir(target).checkpoint.read_bytes() == b"old run"
    check_run_dir(RunDir(link), resume=True, overwrite=False)  # resuming through it is fine


def test_an_input_the_run_writes_or_overwrite_replaces_is_refused(tmp_path: Path) -> None:
    """A teacher read from the run's own student.pt is replaced by the new student as the run
    trains, with or without --overwrite; a file merely kept in the run folder is safe from a
    plain run but set aside and deleted by an --overwrite, so only then is it refused."""
    run = started_run(tmp_path / "run")
    student = run.root / "student.pt"
    kept = run.root / "teacher.pt"
    for overwrite in (False, True):
        with pytest.raises(UserError, match=r"teacher\.checkpoint: .*student\.pt is in"):
            check_inputs_outside_run(
                run, {"teacher.checkpoint": student}, "r.yaml", overwrite=overwrite
            )
    check_inputs_outside_run(run, {"teacher.checkpoint": kept}, "r.yaml", overwrite=False)
    with pytest.raises(UserError) as error:
        check_inputs_outside_run(run, {"teacher.checkpoint": kept}, "r.yaml", overwrite=True)
    assert str(error.value) == (
        f"r.yaml: teacher.checkpoint: {kept} is in {run.root}, which this run --overwrite "
        "replaces; copy it out of the run directory and point the recipe there, or set "
        "output.name to start a new run"
    )
    outside = tmp_path / "teacher.pt"
    check_inputs_outside_run(run, {"teacher.checkpoint": outside}, "r.yaml", overwrite=True)
