"""compressor/quickstart.py: the whole flow end to end on the ready quickstart recipes, and
run again: after it finished, after Ctrl-C, after a recipe was edited or the teacher trained
anew."""

from __future__ import annotations

import ast
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from compressor.quickstart import SHIPPED_RECIPES, _parameter_ratio, headline_batch
from export.latency import is_noisy, spread_of
from tests.cli_helpers import run_cli

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
README = RECIPES.parent / "README.md"


def readme_python(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_quickstart_runs_the_whole_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's main job: teacher → AMKD → ONNX export and validation → gate. From a
    folder without recipes/, as after `pip install`: the recipes installed with compressor
    (the repository's own, test_the_shipped_recipes_are_the_repositorys)."""
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "quickstart")
    assert result.code == 0, result.stderr
    assert "gate passed" in result.stdout
    # Said, or a user of the wheel cannot find the recipes the README has them edit.
    assert result.stdout.startswith(
        f"recipes: the ones installed with compressor, in {SHIPPED_RECIPES}; to run the steps "
        "one by one or edit them, copy that folder to recipes/ here\n"
    )
    summary = result.stdout.split("summary")[-1]
    assert "teacher" in summary and "student" in summary
    exported = json.loads((tmp_path / "runs/quickstart/export/export_report.json").read_text())
    by_batch = {int(batch): value for batch, value in exported["speedup"]["onnxruntime"].items()}
    noisy = {
        int(batch)
        for result in exported["results"]
        if result["backend"] == "onnxruntime" and result["precision"] == "fp32"
        for batch, latency in result["latency"].items()
        if is_noisy(spread_of(latency))
    }
    shown = headline_batch(by_batch, noisy)
    assert f"{by_batch[shown]:.2f}× faster in ONNX Runtime at batch {shown}" in summary
    assert ("(noisy timing)" in summary) == (shown in noisy)
    for path in (
        "runs/quickstart-teacher/student.pt",
        "runs/quickstart/report.html",
        "runs/quickstart/export/student.onnx",
        "runs/quickstart/export/export_report.html",
    ):
        assert (tmp_path / path).is_file(), path
    # The README's code that uses the student runs on this run as written.
    used = subprocess.run(
        [sys.executable, "-c", readme_python("## Using the student in your own code")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert used.returncode == 0, used.stderr
    predicted, difference = used.stdout.splitlines()
    assert len(ast.literal_eval(predicted)) == 4 and float(difference) < 1e-4
    # Run again, it skips both trainings, reading their figures from the runs, and exports
    # and gates again; with the repository's recipes/ here, those are the same runs.
    shutil.copytree(RECIPES, tmp_path / "recipes")
    again = run_cli(capsys, "quickstart")
    assert again.code == 0, again.stderr
    assert "teacher already trained: runs/quickstart-teacher (" in again.stdout
    assert "student already distilled: runs/quickstart (" in again.stdout
    assert "epoch 1/" not in again.stdout
    assert "student: exporting resnet8" in again.stdout and "gate passed" in again.stdout
    figures = summary.split("fewer parameters")[0]  # the speedup is timed again
    assert again.stdout.split("summary")[-1].split("fewer parameters")[0] == figures
    # An edited recipe is not the one the run was trained with: neither skipped nor resumed.
    edited = tmp_path / "recipes" / "quickstart.yaml"
    edited.write_text(edited.read_text().replace("epochs: 15", "epochs: 16"))
    changed = run_cli(capsys, "quickstart")
    assert changed.code == 2
    assert changed.stderr == (
        "error: recipes/quickstart.yaml: not the recipe runs/quickstart was trained with "
        "(train.epochs: 15 → 16); start over with `compress quickstart --overwrite`\n"
    )


def test_the_shipped_recipes_are_the_repositorys() -> None:
    """`compress quickstart` from an installed wheel runs the copies in the package."""
    for name in ("quickstart-teacher.yaml", "quickstart.yaml"):
        assert (SHIPPED_RECIPES / name).read_bytes() == (RECIPES / name).read_bytes(), name


def _short_quickstart(recipes: Path, **student: dict[str, object]) -> None:
    """A copy of the quickstart recipes in `recipes`, with 2 + 1 epochs and `student`'s
    sections merged into quickstart.yaml."""
    shutil.copytree(RECIPES, recipes)
    for name, changes in (
        ("quickstart-teacher.yaml", {"train": {"epochs": 2}}),
        ("quickstart.yaml", {"train": {"epochs": 1}, "teacher": {"min_accuracy": 0}, **student}),
    ):
        path = recipes / name
        recipe = yaml.safe_load(path.read_text())
        for section, values in changes.items():
            recipe[section] = {**recipe.get(section, {}), **values}
        path.write_text(yaml.safe_dump(recipe))


def test_a_quickstart_run_again_gates_with_an_edited_gate_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completed step was skipped, and the export and the gate then read the settings in
    the run's recipe.yaml, not the edited ones: a stricter gate passed. They are written
    there, as `compress distill --resume` does, without training: a run whose checkpoints
    were deleted gets them too."""
    monkeypatch.chdir(tmp_path)
    _short_quickstart(tmp_path / "recipes", gate={"max_drop": 100})
    assert run_cli(capsys, "quickstart").code == 0
    edited = tmp_path / "recipes" / "quickstart.yaml"
    recipe = yaml.safe_load(edited.read_text())
    recipe["gate"]["max_drop"] = 0.0  # a 1-epoch student trails its teacher
    edited.write_text(yaml.safe_dump(recipe))
    shutil.rmtree(tmp_path / "runs/quickstart/checkpoints")
    stricter = run_cli(capsys, "quickstart")
    assert stricter.code == 1, stricter.stdout + stricter.stderr
    assert "teacher already trained" in stricter.stdout
    changed = "runs/quickstart: export, gate or file settings changed since (edited, or the "
    assert changed in " ".join(stricter.stdout.split())
    assert "student already distilled: runs/quickstart (" in stricter.stdout
    assert "gate FAILED" in stricter.stdout
    trained = yaml.safe_load((tmp_path / "runs/quickstart/recipe.yaml").read_text())
    assert trained["gate"]["max_drop"] == 0.0
    unchanged = run_cli(capsys, "quickstart")
    assert "student already distilled: runs/quickstart (" in unchanged.stdout


def test_a_quickstart_moved_to_another_folder_exports_with_the_teacher_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs' recipe.yaml named the teacher by its old absolute path: both steps were
    skipped, then the export failed to load the teacher from the folder that was moved."""
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    monkeypatch.chdir(before)
    _short_quickstart(before / "recipes", gate={"max_drop": 100})
    assert run_cli(capsys, "quickstart").code == 0
    monkeypatch.chdir(tmp_path)
    before.rename(after)
    monkeypatch.chdir(after)
    moved = run_cli(capsys, "quickstart")
    assert moved.code == 0, moved.stdout + moved.stderr
    assert "student already distilled: runs/quickstart (" in moved.stdout
    trained = yaml.safe_load((after / "runs/quickstart/recipe.yaml").read_text())
    assert trained["teacher"]["checkpoint"] == str(after / "runs/quickstart-teacher/student.pt")


def test_quickstart_fails_when_the_exported_student_fails_parity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `compress export` does: exit 1 even though the gate's own rules pass. (Short
    schedules and an unreachable max |logit difference| make it quick and certain.)"""
    monkeypatch.chdir(tmp_path)
    _short_quickstart(tmp_path / "recipes", export={"max_abs_diff": 1e-12}, gate={"max_drop": 100})
    result = run_cli(capsys, "quickstart")
    assert result.code == 1, result.stdout + result.stderr
    summary = result.stdout.split("summary")[-1]
    assert "gate passed; export FAILED: parity with PyTorch for student onnxruntime fp32" in (
        " ".join(summary.split())
    )


def test_quickstart_with_recipes_elsewhere_distils_the_teacher_it_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--recipes FOLDER from another folder: the teacher is trained into runs/ here, while the
    recipe names it relative to its own folder, where an older teacher may be lying."""
    _short_quickstart(tmp_path / "repo" / "recipes", gate={"max_drop": 100})
    stale = tmp_path / "repo" / "runs" / "quickstart-teacher" / "student.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older teacher")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = run_cli(capsys, "quickstart", "--recipes", str(tmp_path / "repo" / "recipes"))
    assert result.code == 0, result.stdout + result.stderr
    run_recipe = yaml.safe_load((tmp_path / "work/runs/quickstart/recipe.yaml").read_text())
    trained = tmp_path / "work" / "runs" / "quickstart-teacher" / "student.pt"
    assert run_recipe["teacher"]["checkpoint"] == str(trained.resolve())
    # Every command it names keeps --recipes.
    edited = tmp_path / "repo" / "recipes" / "quickstart.yaml"
    recipe = yaml.safe_load(edited.read_text())
    recipe["train"]["seed"] = 1
    edited.write_text(yaml.safe_dump(recipe))
    changed = run_cli(capsys, "quickstart", "--recipes", str(tmp_path / "repo" / "recipes"))
    assert changed.code == 2
    assert changed.stderr.rstrip().endswith(
        f"start over with `compress quickstart --recipes {tmp_path / 'repo' / 'recipes'} "
        "--overwrite`"
    )


def test_quickstart_outside_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # A recipes/ folder with one of the two: a half-made copy, not the shipped recipes.
    (tmp_path / "recipes").mkdir()
    shutil.copy(RECIPES / "quickstart.yaml", tmp_path / "recipes")
    result = run_cli(capsys, "quickstart")
    assert result.code == 2
    assert result.stderr == (
        "error: recipes/quickstart-teacher.yaml: not found; run from the folder holding "
        "recipes/ (the repository root, in a clone) or pass --recipes FOLDER\n"
    )
    # --recipes given: not "pass --recipes", which it was.
    missing = run_cli(capsys, "quickstart", "--recipes", "nowhere")
    assert missing.code == 2
    assert missing.stderr.startswith("error: --recipes nowhere: not a folder; name the folder")
    # Named, `recipes` is that folder too, not the default that falls back to the shipped ones.
    shutil.rmtree(tmp_path / "recipes")
    named = run_cli(capsys, "quickstart", "--recipes", "recipes")
    assert named.code == 2
    assert named.stderr.startswith("error: --recipes recipes: not a folder; name the folder")
    assert not (tmp_path / "runs").exists()
    (tmp_path / "empty").mkdir()
    empty = run_cli(capsys, "quickstart", "--recipes", "empty")
    assert empty.stderr == (
        "error: empty/quickstart-teacher.yaml: not found; give --recipes the repository's "
        "recipes/ folder\n"
    )


@pytest.mark.parametrize(
    ("student", "expected"),
    [
        (
            {"output": {"name": "quickstart-teacher"}},
            "error: recipes/quickstart.yaml: its run runs/quickstart-teacher is the teacher's "
            "(recipes/quickstart-teacher.yaml); give the student another output.name\n",
        ),
        ({"train": {"epochs": "many"}}, "error: recipes/quickstart.yaml: train.epochs: "),
    ],
    ids=["same run", "bad value"],
)
def test_a_student_recipe_that_cannot_run_is_refused_before_the_teacher_trains(
    student: dict[str, object],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    _short_quickstart(tmp_path / "recipes", **student)
    refused = run_cli(capsys, "quickstart")
    assert refused.code == 2
    assert refused.stderr.startswith(expected), refused.stderr
    assert "epoch 1/" not in refused.stdout and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_an_interrupted_quickstart_continues_where_it_stopped(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
) -> None:
    """Ctrl-C during the distillation says to run the quickstart again (and, after
    --overwrite, how to start over instead); run again, it skips the teacher it trained and
    resumes the distillation from its last checkpoint."""
    monkeypatch.chdir(tmp_path)
    _short_quickstart(tmp_path / "recipes", train={"epochs": 3}, gate={"max_drop": 100})
    checkpoint = tmp_path / "runs" / "quickstart" / "checkpoints" / "last.pt"
    log = tmp_path / "quickstart.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "compressor", "quickstart", *flags], stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 240
            while not checkpoint.exists():  # the distillation's first epoch is done
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
    said = log.read_text().rstrip().splitlines()
    assert process.returncode == 130, said
    # Not `compress distill recipes/quickstart.yaml --resume`: the quickstart gives that
    # recipe the teacher it trained, which the file alone finds only from the repository root.
    # Said once: the step's line, and after --overwrite how to start over instead.
    start_over = ["or start over with: compress quickstart --overwrite"] if flags else []
    stopped = said[-1 - len(start_over)]
    assert stopped.endswith("interrupted; continue with: compress quickstart"), said
    assert said[len(said) - len(start_over) :] == start_over
    assert sum("continue with" in line for line in said) == 1, said

    again = run_cli(capsys, "quickstart")
    assert again.code == 0, again.stdout + again.stderr
    assert "teacher already trained: runs/quickstart-teacher (" in again.stdout
    assert "resuming runs/quickstart after epoch" in again.stdout
    assert "gate passed" in again.stdout


def test_quickstart_distils_again_from_a_teacher_trained_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teacher trained again with other weights (here: its run removed, its recipe's seed
    changed): the student distilled from the old one is distilled again, not skipped (export
    would refuse the pair) nor resumed."""
    monkeypatch.chdir(tmp_path)
    _short_quickstart(tmp_path / "recipes", gate={"max_drop": 100})
    assert run_cli(capsys, "quickstart").code == 0
    shutil.rmtree(tmp_path / "runs" / "quickstart-teacher")
    teacher = tmp_path / "recipes" / "quickstart-teacher.yaml"
    recipe = yaml.safe_load(teacher.read_text())
    recipe["train"]["seed"] = 1
    teacher.write_text(yaml.safe_dump(recipe))
    again = run_cli(capsys, "quickstart")
    assert again.code == 0, again.stdout + again.stderr
    assert "runs/quickstart was distilled from another teacher; distilling it again" in (
        again.stdout
    )
    assert "already" not in again.stdout
    assert "gate passed" in again.stdout


def test_the_headline_speedup_is_the_best_steady_one() -> None:
    """A noisy timing that reads faster does not become the summary's figure; with nothing
    steady, the best noisy one is shown (and marked by the caller)."""
    speedups = {1: 2.84, 64: 2.41, 256: 2.55}
    assert headline_batch(speedups, noisy={1}) == 256
    assert headline_batch(speedups, noisy=set()) == 1
    assert headline_batch(speedups, noisy={1, 64, 256}) == 1


def test_a_student_larger_than_its_teacher_is_said_to_have_more_parameters() -> None:
    """An edited quickstart recipe's larger student read "0.2× fewer parameters"."""
    assert _parameter_ratio(269_722, 75_290) == "3.6× fewer parameters"
    assert _parameter_ratio(269_722, 1_528_106) == "5.7× more parameters"
    assert _parameter_ratio(269_722, 269_722) == _parameter_ratio(269_722, 270_000)
    assert _parameter_ratio(269_722, 270_000) == "as many parameters"  # not "1.0× fewer"
