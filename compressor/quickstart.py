"""`compress quickstart`: train a teacher, distil it, export and gate the student, on the
embedded digits data. Run again, it continues where it stopped, so each training step first
decides whether to skip, resume or start over the run an earlier quickstart left."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from compressor.errors import UserError
from compressor.interrupt import stop
from compressor.terminal import (
    console,
    error_console,
    print_export,
    print_gate,
    print_warning,
    shell_path,
    students_failing_parity,
    train_and_print,
)

if TYPE_CHECKING:
    from compressor.engine.run import RunResult
    from compressor.recipe import Recipe
    from export import ExportReport


# The quickstart's recipes as the package ships them, for an install from a wheel, which has
# no repository's recipes/ folder (tests check that they are the repository's files).
SHIPPED_RECIPES = Path(__file__).resolve().parent / "quickstart_recipes"
_RECIPE_NAMES = ("quickstart-teacher.yaml", "quickstart.yaml")


def run_quickstart(given: Path | None, *, overwrite: bool) -> None:
    """The quickstart with the recipes in folder `given` (--recipes); `overwrite`: train both
    runs again. Ctrl-C says how to continue (or start over), as rerunning the quickstart
    resumes.

    Without --recipes, `recipes/` holding neither recipe means the shipped ones; a folder
    holding one of them is a half-copied one, refused as before. A folder named with
    --recipes is always the one used, even when it is spelled `recipes`.
    """
    again = QuickstartCommand(given)
    recipes = given or Path("recipes")
    if not given and not any((recipes / name).is_file() for name in _RECIPE_NAMES):
        recipes = SHIPPED_RECIPES
    teacher_recipe, student_recipe = (recipes / name for name in _RECIPE_NAMES)
    if given and not recipes.is_dir():
        raise UserError(
            f"--recipes {recipes}: not a folder; name the folder that holds quickstart.yaml "
            "and quickstart-teacher.yaml (the repository's recipes/)"
        )
    for path in (teacher_recipe, student_recipe):
        if not path.is_file():
            where = (
                "give --recipes the repository's recipes/ folder"
                if given
                else "run from the folder holding recipes/ (the repository root, in a clone) or "
                "pass --recipes FOLDER"
            )
            raise UserError(f"{path}: not found; {where}")
    if recipes == SHIPPED_RECIPES:  # installed from a wheel, or run outside the clone
        console.print(
            f"recipes: the ones installed with compressor, in {shell_path(recipes)}; to run "
            "the steps one by one or edit them, copy that folder to recipes/ here",
            highlight=False,
            soft_wrap=True,
        )
    try:
        _run_steps(teacher_recipe, student_recipe, again, overwrite=overwrite)
    except KeyboardInterrupt:
        # Rerunning the quickstart resumes the step that stopped, and runs the steps after it.
        # A training step has said so ("continue with: compress quickstart"); the export's not.
        if not stop.said:
            error_console.print(
                f"quickstart interrupted; continue with: {again.line()}",
                highlight=False,
                soft_wrap=True,
            )
        # After --overwrite, continuing keeps what the new runs share with the old (an
        # identical teacher keeps its student): starting over needs the flag again.
        if overwrite:
            error_console.print(
                f"or start over with: {again.line('--overwrite')}", highlight=False, soft_wrap=True
            )
        stop.said = True
        raise


class QuickstartCommand:
    """`compress quickstart`, with the --recipes it was given: what every "continue with" or
    "start over with" line of the quickstart names. A step's own `compress distill RECIPE
    --resume` would not do: the quickstart gives the student's recipe the teacher it trained,
    which the recipe file finds only when it is read from the repository root."""

    def __init__(self, recipes: Path | None) -> None:
        self.words = ["compress", "quickstart"]
        if recipes is not None:
            self.words += ["--recipes", str(recipes)]

    def line(self, *flags: str) -> str:
        return shlex.join([*self.words, *flags])


def _run_steps(
    teacher_recipe: Path, student_recipe: Path, again: QuickstartCommand, *, overwrite: bool
) -> None:
    """The four steps and the summary; exit 1 when the gate or the export's parity fails."""
    from compressor.gate import evaluate_gate
    from compressor.recipe import load_recipe
    from export import ExportOptions, export_run

    # Both recipes read before anything trains: a mistake in the second is not found after
    # minutes of training the teacher.
    teaching, distilled = load_recipe(teacher_recipe), load_recipe(student_recipe)
    _check_separate_runs(teacher_recipe, teaching, student_recipe, distilled)
    console.rule("1/4 train the teacher (cross-entropy)")
    teacher_run = _train_step(teacher_recipe, teaching, again, distill=False, start_over=overwrite)
    console.rule("2/4 distil it into the student (AMKD)")
    # The recipe finds the teacher relative to its own folder, which is the teacher run just
    # trained only from the repository root: from anywhere else (--recipes) it is this one.
    if distilled.teacher is not None:
        checkpoint = teacher_run.run.student.resolve()
        teacher = distilled.teacher.model_copy(update={"checkpoint": checkpoint})
        distilled = distilled.model_copy(update={"teacher": teacher})
    run = _train_step(student_recipe, distilled, again, distill=True, start_over=overwrite)
    console.rule("3/4 export to ONNX, validate, time")
    report = export_run(
        run.run.root, ExportOptions(), log=lambda line: console.print(line), warn=print_warning
    )
    print_export(report)
    console.rule("4/4 gate")
    gate = evaluate_gate(run.run.root, warn=print_warning)
    print_gate(gate)

    assert run.teacher is not None  # a distillation run always has one
    speedup = _best_speedup(report, "onnxruntime")
    failed_parity = students_failing_parity(report)
    parity = f"; export FAILED: parity with PyTorch for {failed_parity}" if failed_parity else ""
    console.rule("summary")
    console.print(
        f"teacher {run.teacher.accuracy:.2f} % → student {run.student.accuracy:.2f} % top-1, "
        f"{_parameter_ratio(run.teacher.parameters, run.student.parameters)}{speedup}; "
        f"gate {'passed' if gate.passed else 'FAILED'}{parity}",
        soft_wrap=True,
    )
    reports = (run.run.root / "report.html", report.files["html"])
    console.print(f"reports: {shell_path(reports[0])}, {shell_path(reports[1])}")
    if not gate.passed or failed_parity:
        raise typer.Exit(1)


def _check_separate_runs(
    teacher_path: Path, teaching: Recipe, student_path: Path, distilled: Recipe
) -> None:
    """The student's run must not be the teacher's: distilling would replace the teacher it
    reads (and an --overwrite would be refused only after the teacher had trained)."""
    from compressor.rundir import run_dir_for

    run = run_dir_for(distilled, student_path)
    if run.root.resolve() == run_dir_for(teaching, teacher_path).root.resolve():
        raise UserError(
            f"{student_path}: its run {run.root} is the teacher's ({teacher_path}); give the "
            "student another output.name"
        )


def _train_step(
    path: Path, recipe: Recipe, again: QuickstartCommand, *, distill: bool, start_over: bool
) -> RunResult:
    """One training step, continued where an earlier quickstart left it: a run that completed
    with this recipe is skipped, one that stopped is resumed from its checkpoint, and one
    stopped before its first checkpoint is started again. `start_over`: train afresh."""
    from compressor.engine.run import write_free_settings
    from compressor.rundir import has_checkpoint, holds_run, run_dir_for

    run = run_dir_for(recipe, path)
    if distill and not start_over and _distilled_from_another_teacher(path, recipe):
        console.print(f"{run.root} was distilled from another teacher; distilling it again")
        start_over = True

    def train(resume: bool, overwrite: bool) -> RunResult:
        return train_and_print(
            path,
            distill=distill,
            resume=resume,
            overwrite=overwrite,
            recipe=recipe,
            continue_with=again.line(),
        )

    if start_over or not holds_run(run):
        return train(resume=False, overwrite=start_over)
    done = _completed_run_result(path, recipe)
    if done is None and not has_checkpoint(run):
        return train(resume=False, overwrite=True)
    _check_begun_with(path, recipe, again)
    if done is None:
        return train(resume=True, overwrite=False)
    # Skipping would export and gate with the settings the run still has (a teacher at the
    # path the repository had before it moved): those a finished run may change are written
    # into its recipe.yaml, as --resume writes them (the run may have no checkpoint left).
    if write_free_settings(run, recipe):
        console.print(
            f"{run.root}: export, gate or file settings changed since (edited, or the folder "
            "moved); written to its recipe.yaml"
        )
    step = "student already distilled" if distill else "teacher already trained"
    console.print(f"{step}: {run.root} ({done.student.accuracy:.2f} %); skipping")
    return done


def _completed_run_result(path: Path, recipe: Recipe) -> RunResult | None:
    """The figures of the recipe's run when it completed and is whole; None otherwise."""
    from compressor.engine.run import completed_run_result
    from compressor.rundir import run_dir_for

    return completed_run_result(run_dir_for(recipe, path))


def _check_begun_with(path: Path, recipe: Recipe, again: QuickstartCommand) -> None:
    """Refuse to skip or resume a run begun with another recipe than `path` says now (it was
    edited since): the quickstart would report, or go on with, a run the recipe does not
    describe."""
    from compressor.engine.resume import recipe_changes, run_recipe_lost, started_recipe
    from compressor.rundir import run_dir_for

    run = run_dir_for(recipe, path)
    begun = started_recipe(run, recipe)
    if begun == recipe:
        return
    if begun is None:
        said = f"{run_recipe_lost(run)}, so it cannot be told whether the run was trained with it"
    else:
        said = f"not the recipe {run.root} was trained with ({recipe_changes(begun, recipe)})"
    raise UserError(f"{path}: {said}; start over with `{again.line('--overwrite')}`")


def _distilled_from_another_teacher(path: Path, recipe: Recipe) -> bool:
    """Was the recipe's run distilled from another teacher than the one it names now (trained
    since: by this quickstart, or by `compress train --overwrite`)? Its student learnt from
    weights that are gone, so it is distilled again rather than skipped or resumed. The
    manifest records the teacher's weights hash when distillation starts."""
    from compressor.models import load_teacher, read_checkpoint
    from compressor.models.fingerprint import weights_sha256
    from compressor.rundir import check_same_teacher, holds_run, run_dir_for

    run = run_dir_for(recipe, path)
    if recipe.teacher is None or recipe.teacher.checkpoint is None or not holds_run(run):
        return False
    record = read_checkpoint(recipe.teacher.checkpoint)  # the teacher run's student.pt
    teacher = load_teacher(recipe.teacher, record["num_classes"], record["image_shape"][0])
    try:
        check_same_teacher(run, recipe, weights_sha256(teacher), fix="")
    except UserError:
        return True
    return False


def _best_speedup(report: ExportReport, backend: str) -> str:
    """The summary's speedup: the headline batch size's, named, and marked when its timing
    was noisy (the warning saying so scrolled by above)."""
    speedups = report.speedup.get(backend, {})
    if not speedups:
        return ""
    from export.results import NOISY_MARK, noisy_speedups

    noisy_batches = noisy_speedups(report.results).get(backend, set())
    batch = headline_batch(speedups, noisy_batches)
    noisy = NOISY_MARK if batch in noisy_batches else ""
    return f", {speedups[batch]:.2f}× faster in ONNX Runtime at batch {batch}{noisy}"


def _parameter_ratio(teacher: int, student: int) -> str:
    """'3.6× fewer parameters', or 'N× more' for an edited recipe's larger student: "0.2×
    fewer" read as a typo."""
    if round(teacher / student, 1) == 1.0 == round(student / teacher, 1):
        return "as many parameters"
    if student > teacher:
        return f"{student / teacher:.1f}× more parameters"
    return f"{teacher / student:.1f}× fewer parameters"


def headline_batch(speedups: dict[int, float], noisy: set[int]) -> int:
    """The batch size whose speedup the summary shows: the best among steady timings, as the
    best of all would favour a figure that noise inflated; the best noisy one only when no
    timing was steady."""
    steady = [batch for batch in speedups if batch not in noisy]
    return max(steady or speedups, key=lambda batch: speedups[batch])
