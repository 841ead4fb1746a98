"""The `compress` command. Thin: parse arguments, call library functions, map errors to exits.

Exit codes: 0 success, 1 a check failed (the gate), 2 bad input (recipe, checkpoint, data,
flags) — printed as one line per problem, without a traceback unless `--debug` is given;
130 Ctrl-C, 143 SIGTERM, 141 output into a closed pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import compressor
from compressor.errors import UserError

if TYPE_CHECKING:
    from compressor.engine.run import RunResult
    from compressor.gate import GateResult
    from compressor.recipe import Recipe
    from export import ExportReport

app = typer.Typer(
    name="compress",
    help="Distil a PyTorch teacher into a small, fast student (AMKD), export it, gate it in CI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
recipe_app = typer.Typer(
    help="Check a recipe, or print its JSON Schema.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(recipe_app, name="recipe")

# Paths and recipe names may hold brackets, which rich would read as markup: none is used.
console = Console(markup=False)
error_console = Console(stderr=True, markup=False)
_debug = {"enabled": False}


class _Command(typer.core.TyperCommand):
    """A command whose usage line names a required argument as click does, `compress export
    RUN`, as the README and the messages write it, not as typer's `{RUN}`."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [piece.removeprefix("{").removesuffix("}") for piece in pieces]


RecipeFile = Annotated[
    Path, typer.Argument(metavar="FILE", help="Recipe YAML file.", show_default=False)
]
RunDirectory = Annotated[
    Path,
    typer.Argument(metavar="RUN", help="Run directory (runs/<name>).", show_default=False),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from checkpoints/last.pt.")]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing run; it is kept in <name>.replaced until the new one completes.",
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"compressor {compressor.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    _debug["enabled"] = debug


@recipe_app.command(
    "validate", cls=_Command, short_help="Check a recipe without reading data or training."
)
def recipe_validate(path: RecipeFile) -> None:
    """Check a recipe without reading the data or training; one line per problem.

    Checks the schema, files, architectures, class counts, that the student builds and the
    teacher loads (building it runs the entrypoint a recipe names) and gives one logit per
    class, and that a feature-space triplet compares layers of one width; warns about a
    train.device this machine lacks. `compress teacher` also scores the teacher.
    """
    from compressor.preflight import check_models_build, check_recipe, device_warnings
    from compressor.recipe import load_recipe

    recipe = load_recipe(path)
    check_recipe(recipe, str(path), needs_teacher=False)
    check_models_build(recipe, str(path))
    for warning in device_warnings(recipe):
        error_console.print(f"warning: {path}: {warning}", highlight=False, soft_wrap=True)
    teacher = "no teacher" if recipe.teacher is None else "teacher loads"
    console.print(
        f"{path}: valid (method {recipe.method.name}, student {recipe.student.arch}, "
        f"data {recipe.data.name}, {teacher})"
    )


@recipe_app.command("schema", short_help="Print the recipe's JSON Schema (for editors).")
def recipe_schema_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Print the recipe's JSON Schema (for editor completion and validation)."""
    from compressor.io import write_text
    from compressor.recipe import recipe_schema

    text = json.dumps(recipe_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            write_text(output, text)
        except OSError as error:
            raise UserError(f"{output}: cannot write the schema ({error.strerror})") from None
        console.print(f"wrote {output}")


@app.command("models", short_help="List the model zoo's architectures.")
def models_command() -> None:
    """List the model zoo's architectures (any torchvision classifier name works too)."""
    from compressor.models import list_models

    for name in list_models():
        console.print(name)


@app.command("teacher", cls=_Command, short_help="Measure the recipe's teacher on its test set.")
def teacher_command(path: RecipeFile) -> None:
    """Load the recipe's teacher and measure its test accuracy: the check before distilling."""
    from compressor.engine.run import check_teacher
    from compressor.recipe import load_recipe

    recipe = load_recipe(path)
    summary, count = check_teacher(recipe, str(path))
    console.print(
        f"teacher: test top-1 {summary.accuracy:.2f} % on {count:,} images, "
        f"{summary.parameters:,} parameters, {summary.flops / 1e6:,.1f} MFLOPs per image"
    )


def _run(
    path: Path, *, distill: bool, resume: bool, overwrite: bool, recipe: Recipe | None = None
) -> RunResult:
    """Train `path`'s recipe (or `recipe`, read from it and amended) and print the results."""
    from compressor.engine.run import run_training
    from compressor.progress import RichObserver
    from compressor.recipe import load_recipe

    if recipe is None:  # a resumed run goes on with the settings it began with
        recipe = load_recipe(path, started=resume)
    try:
        result = run_training(
            recipe,
            path,
            distill=distill,
            resume=resume,
            overwrite=overwrite,
            observer=RichObserver(console),
        )
    except KeyboardInterrupt:
        _stop.said = True  # run_training printed where the run stopped and how to resume it
        raise
    if not result.main_process:
        return result  # torchrun: rank 0 prints the results once
    table = Table(title=f"run {result.run.root}")
    table.add_column("")
    if result.teacher is not None:
        table.add_column("teacher", justify="right")
    table.add_column("student", justify="right")
    models = [m for m in (result.teacher, result.student) if m is not None]
    table.add_row("test top-1 (%)", *(f"{m.accuracy:.2f}" for m in models))
    table.add_row("parameters", *(f"{m.parameters:,}" for m in models))
    table.add_row("MFLOPs / image", *(f"{m.flops / 1e6:,.2f}" for m in models))
    console.print(table)
    if result.agreement is not None:
        console.print(f"top-1 agreement teacher/student: {result.agreement:.2f} %")
    console.print(f"reports: {result.run.root / 'report.html'} (also .md, .json)")
    return result


@app.command("train", cls=_Command, short_help="Train the recipe's student with cross-entropy.")
def train_command(path: RecipeFile, resume: Resume = False, overwrite: Overwrite = False) -> None:
    """Train the recipe's student from scratch with cross-entropy (no teacher).

    Use it for the CE baseline, or to train a teacher: name the teacher's architecture as the
    student.
    """
    _run(path, distill=False, resume=resume, overwrite=overwrite)


@app.command(
    "distill", cls=_Command, short_help="Distil the teacher into the student (AMKD, KD, ...)."
)
def distill_command(path: RecipeFile, resume: Resume = False, overwrite: Overwrite = False) -> None:
    """Distil the recipe's teacher into its student with the recipe's method (AMKD, KD, ...)."""
    _run(path, distill=True, resume=resume, overwrite=overwrite)


def _threshold_option(field: str, help_text: str) -> typer.models.OptionInfo:
    return typer.Option(f"--{field}", help=f"{help_text} Default: the recipe's gate section.")


def _print_gate(result: GateResult) -> None:
    table = Table(title=f"gate {result.run} ({result.backend} {result.precision})")
    table.add_column("rule", no_wrap=True)
    table.add_column("measured", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    styles = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}
    for rule in result.rules:
        table.add_row(
            rule.name,
            rule.measured_text,
            rule.threshold_text,
            Text(rule.status, style=styles[rule.status]),
            Text(rule.detail),
        )
    console.print(table)
    if result.passed:
        console.print("gate passed")
    else:
        console.print(f"gate FAILED: {', '.join(rule.name for rule in result.failed)}")


@app.command("gate", cls=_Command, short_help="Check a run against its quality gate (for CI).")
def gate_command(
    run: RunDirectory,
    max_drop: Annotated[
        float | None, _threshold_option("max-drop", "Student may trail the teacher by (points).")
    ] = None,
    max_export_drop: Annotated[
        float | None,
        _threshold_option("max-export-drop", "Export may trail PyTorch by (points)."),
    ] = None,
    min_agreement: Annotated[
        float | None,
        _threshold_option("min-agreement", "Top-1 agreement export vs PyTorch (%)."),
    ] = None,
    min_speedup: Annotated[
        float | None, _threshold_option("min-speedup", "Teacher/student p50 latency ratio.")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Exported backend to gate: onnxruntime or tensorrt.")
    ] = "onnxruntime",
    precision: Annotated[
        str, typer.Option(help="Exported precision: fp32, fp16 or int8.")
    ] = "fp32",
    speedup_batch: Annotated[
        int | None,
        typer.Option(help="Batch size for the speedup rule. Default: the largest timed."),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write the verdict as JUnit XML.")
    ] = None,
) -> None:
    """Check a run against its quality gate: exit 0 if all rules pass, 1 if any fails."""
    from compressor.gate import evaluate_gate
    from compressor.reporting.junit import check_junit_path, write_junit

    if junit is not None:
        check_junit_path(junit)
    try:
        result = evaluate_gate(
            run,
            {
                "max_drop": max_drop,
                "max_export_drop": max_export_drop,
                "min_agreement": min_agreement,
                "min_speedup": min_speedup,
            },
            backend=backend,
            precision=precision,
            speedup_batch=speedup_batch,
        )
    except UserError as error:
        if junit is not None:
            _record_gate_error(error, junit)
        raise
    except Exception as crash:  # a bug: still no earlier passing verdict left in the file
        if junit is not None:
            with contextlib.suppress(UserError):
                _record_gate_error(UserError(f"the gate crashed: {crash!r}"), junit)
        raise
    _print_gate(result)
    if junit is not None:
        write_junit(result, junit)
        console.print(f"wrote {junit}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def _record_gate_error(error: UserError, junit: Path) -> None:
    """The gate could not run: say so in the JUnit file, so a CI job does not go on showing an
    earlier, passing verdict. If that file cannot be written either, both problems are told."""
    from compressor.reporting.junit import write_junit_error

    try:
        write_junit_error(error, junit)
    except UserError as unwritable:
        raise UserError(*error.lines, *unwritable.lines) from None


def _junit_of_gate(argv: list[str]) -> Path | None:
    """The --junit file of a `compress gate` command line, for a usage error typer raised
    before the command could record it."""
    if "gate" not in argv:
        return None
    for index, argument in enumerate(argv):
        if argument.startswith("--junit="):
            return Path(argument.removeprefix("--junit="))
        if argument == "--junit" and index + 1 < len(argv):
            return Path(argv[index + 1])
    return None


def _batch_sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes {text!r}: give whole numbers separated by commas") from None


@app.command("export", cls=_Command, short_help="Export to ONNX (+ TensorRT), validate and time.")
def export_command(
    run: RunDirectory,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx/--no-onnx",
            help="Validate and time with ONNX Runtime. The ONNX files are always written.",
        ),
    ] = True,
    trt: Annotated[bool, typer.Option("--trt", help="Also build and validate TensorRT.")] = False,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also export and validate a float16 student.")
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also quantise each exported model to INT8 (static Q/DQ, calibrated on "
            "training images; settings: recipe export.int8) and validate it.",
        ),
    ] = False,
    calibration_images: Annotated[
        int | None,
        typer.Option(help="INT8 calibration images. Default: export.int8.calibration_images."),
    ] = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option(help="Latency batch sizes, e.g. 1,64. Default: recipe export.batch_sizes."),
    ] = None,
    teacher: Annotated[
        bool | None,
        typer.Option(
            "--teacher/--no-teacher", help="Export the teacher too. Default: if the run has one."
        ),
    ] = None,
    runs: Annotated[
        int | None, typer.Option(help="Timed runs per latency. Default: export.timed_runs.")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(help="Warm-up runs. Default: export.warmup_runs.")
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset. Default: export.opset.")] = None,
    max_abs_diff: Annotated[
        float | None,
        typer.Option(help="fp32 parity: max |logit diff|. Default: export.max_abs_diff."),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(help="fp32 parity: top-1 agreement, %. Default: export.min_agreement."),
    ] = None,
    student_onnx: Annotated[
        Path | None,
        typer.Option(help="Validate this ONNX file (optimised, quantised) as the student."),
    ] = None,
) -> None:
    """Export the run's student (and teacher) to ONNX (+ TensorRT), validate and time them.

    Checks parity and accuracy on the run's test set, times every backend, and writes
    export/export_report.json|md|html.
    """
    from export import ExportOptions, export_run

    if calibration_images is not None and not int8:
        raise UserError("--calibration-images: applies to --int8 only; add --int8, or drop it")
    options = ExportOptions(
        onnxruntime=onnx,
        tensorrt=trt,
        fp16=fp16,
        int8=int8,
        calibration_images=calibration_images,
        teacher=teacher,
        student_onnx=student_onnx,
        batch_sizes=_batch_sizes(batch_sizes),
        opset=opset,
        warmup_runs=warmup,
        timed_runs=runs,
        max_abs_diff=max_abs_diff,
        min_agreement=min_agreement,
    )
    try:
        report = export_run(run, options, log=lambda line: console.print(line))
    except KeyboardInterrupt:
        # The export is staged and swapped in only when it finishes: the previous one is intact.
        _stop.said = True
        console.print(
            f"export interrupted: run `{shlex.join(['compress', *sys.argv[1:]])}` again to "
            "finish it; the previous export is as it was",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    _print_export(report)
    console.print(f"reports: {report.files['html']} (also .md, .json)")
    if report.problems:
        raise UserError(*report.problems)
    failed = _students_failing_parity(report)
    if failed:
        # Like a failed gate rule: the export and its reports are written, and CI sees a fail.
        console.print(f"export FAILED: parity with PyTorch for {failed}")
        raise typer.Exit(1)


def _students_failing_parity(report: ExportReport) -> str:
    """The exported students whose outputs left PyTorch's: what ships must match it. (A
    teacher's files, exported for the speedup figures, only warn.)"""
    return ", ".join(
        f"{r.model} {r.backend} {r.precision}"
        for r in report.results
        if r.model == "student" and r.parity is not None and not r.parity.passed
    )


def _print_export(report: ExportReport) -> None:
    from export.report import signed_points

    batches = report.settings.batch_sizes
    table = Table(title=f"export {report.run} (p50 latency in ms)", box=box.SIMPLE_HEAD)
    for column in ("model", "backend", "prec.", "device", "top-1 %", "parity"):
        table.add_column(column, justify="right" if column == "top-1 %" else "left")
    for batch in batches:
        table.add_column(f"@{batch}", justify="right")
    for result in report.results:
        parity = result.parity
        table.add_row(
            result.model,
            result.backend,
            result.precision,
            result.device,
            f"{result.accuracy:.2f}",
            "—" if parity is None else ("pass" if parity.passed else "FAIL"),
            *(f"{result.latency[b].p50_ms:.3g}" if b in result.latency else "—" for b in batches),
        )
    console.print(table)
    for backend, by_batch in report.speedup.items():
        figures = ", ".join(f"{value:.2f}× at batch {batch}" for batch, value in by_batch.items())
        console.print(f"student speedup over the teacher ({backend}): {figures}")
    for row in report.precisions:
        speed = ", ".join(f"{value:.2f}× at batch {b}" for b, value in row["speedup"].items())
        smaller = f", {row['size_ratio']:.1f}× smaller" if row["size_ratio"] else ""
        console.print(
            f"{row['model']} {row['precision']} vs fp32 ({row['backend']}): top-1 "
            f"{signed_points(-row['accuracy_drop'])} points, {speed}{smaller}"
        )
    for warning in report.warnings:
        console.print(f"warning: {warning}", style="yellow")


@app.command("quickstart", short_help="The whole flow on embedded data, no download.")
def quickstart_command(
    recipes: Annotated[
        Path, typer.Option(help="Folder with quickstart-teacher.yaml and quickstart.yaml.")
    ] = Path("recipes"),
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start over: train both runs again (each old run is kept in <name>.replaced "
            "until its new one completes).",
        ),
    ] = False,
) -> None:
    """The whole flow on the embedded digits data, no download; about a minute on 2 cores.

    Trains a teacher, distils it with AMKD, exports both to ONNX and validates them, gates.
    Run again, it continues where it stopped: a finished step is skipped, an interrupted one
    resumed; export and the gate always run.
    """
    teacher_recipe, student_recipe = (
        recipes / "quickstart-teacher.yaml",
        recipes / "quickstart.yaml",
    )
    for path in (teacher_recipe, student_recipe):
        if not path.is_file():
            raise UserError(
                f"{path}: not found; run from the repository root or pass --recipes FOLDER"
            )
    try:
        _quickstart(teacher_recipe, student_recipe, overwrite=overwrite)
    except KeyboardInterrupt:
        # The step's own line says `compress train ... --resume`; rerunning the quickstart
        # does that, and the steps after it.
        _stop.said = True
        again = ["compress", "quickstart"]
        if recipes != Path("recipes"):
            again += ["--recipes", str(recipes)]
        # After --overwrite, continuing keeps what the new runs share with the old (an
        # identical teacher keeps its student): starting over needs the flag again.
        fresh = f", or `{shlex.join([*again, '--overwrite'])}` to start over" if overwrite else ""
        console.print(
            f"quickstart interrupted; run `{shlex.join(again)}` again to continue where it "
            f"stopped{fresh}",
            highlight=False,
            soft_wrap=True,
        )
        raise


def _quickstart(teacher_recipe: Path, student_recipe: Path, *, overwrite: bool) -> None:
    """The four steps and the summary; exit 1 when the gate or the export's parity fails."""
    from compressor.gate import evaluate_gate
    from compressor.recipe import load_recipe
    from export import ExportOptions, export_run

    console.rule("1/4 train the teacher (cross-entropy)")
    teacher_run = _quickstart_step(
        teacher_recipe, load_recipe(teacher_recipe), distill=False, start_over=overwrite
    )
    console.rule("2/4 distil it into the student (AMKD)")
    # The recipe finds the teacher relative to its own folder, which is the teacher run just
    # trained only from the repository root: from anywhere else (--recipes) it is this one.
    distilled = load_recipe(student_recipe)
    if distilled.teacher is not None:
        checkpoint = teacher_run.run.student.resolve()
        teacher = distilled.teacher.model_copy(update={"checkpoint": checkpoint})
        distilled = distilled.model_copy(update={"teacher": teacher})
    run = _quickstart_step(student_recipe, distilled, distill=True, start_over=overwrite)
    console.rule("3/4 export to ONNX, validate, time")
    report = export_run(run.run.root, ExportOptions(), log=lambda line: console.print(line))
    _print_export(report)
    console.rule("4/4 gate")
    gate = evaluate_gate(run.run.root)
    _print_gate(gate)

    assert run.teacher is not None  # a distillation run always has one
    speedups = report.speedup.get("onnxruntime", {})
    speedup = f", {max(speedups.values()):.2f}× faster in ONNX Runtime" if speedups else ""
    failed_parity = _students_failing_parity(report)
    parity = f"; export FAILED: parity with PyTorch for {failed_parity}" if failed_parity else ""
    console.rule("summary")
    console.print(
        f"teacher {run.teacher.accuracy:.2f} % → student {run.student.accuracy:.2f} % top-1, "
        f"{run.teacher.parameters / run.student.parameters:.1f}× fewer parameters{speedup}; "
        f"gate {'passed' if gate.passed else 'FAILED'}{parity}",
        soft_wrap=True,
    )
    console.print(f"reports: {run.run.root / 'report.html'}, {report.files['html']}")
    if not gate.passed or failed_parity:
        raise typer.Exit(1)


def _quickstart_step(path: Path, recipe: Recipe, *, distill: bool, start_over: bool) -> RunResult:
    """One training step, continued where an earlier quickstart left it: a run that completed
    with this recipe is skipped, one that stopped is resumed from its checkpoint, and one
    stopped before its first checkpoint is started again. `start_over`: train afresh."""
    from compressor.rundir import has_checkpoint, holds_run, run_dir_for

    run = run_dir_for(recipe, path)
    if distill and not start_over and _distilled_from_another_teacher(path, recipe):
        console.print(f"{run.root} was distilled from another teacher; distilling it again")
        start_over = True
    if start_over or not holds_run(run):
        return _run(path, distill=distill, resume=False, overwrite=start_over, recipe=recipe)
    done = _completed_run_result(path, recipe)
    if done is None and not has_checkpoint(run):
        return _run(path, distill=distill, resume=False, overwrite=True, recipe=recipe)
    _check_begun_with(path, recipe)
    if done is None:
        return _run(path, distill=distill, resume=True, overwrite=False, recipe=recipe)
    step = "student already distilled" if distill else "teacher already trained"
    console.print(f"{step}: {run.root} ({done.student.accuracy:.2f} %); skipping")
    return done


def _completed_run_result(path: Path, recipe: Recipe) -> RunResult | None:
    """The figures of the recipe's run, read from its report.json once `read_completed_run`
    (where export starts) finds it completed and whole. None otherwise: resuming finishes the
    run, or writes its lost files again from the last checkpoint."""
    from compressor.engine.run import ModelSummary, RunResult
    from compressor.rundir import read_completed_run, run_dir_for

    run = run_dir_for(recipe, path)
    try:
        read_completed_run(run)
        fields = json.loads(run.report("json").read_text(encoding="utf-8"))["results"]
        teacher = ModelSummary(**fields["teacher"]) if fields["teacher"] else None
        return RunResult(run, ModelSummary(**fields["student"]), teacher, fields["top1_agreement"])
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None


def _check_begun_with(path: Path, recipe: Recipe) -> None:
    """Refuse to skip or resume a run begun with another recipe than `path` says now (it was
    edited since): the quickstart would report, or go on with, a run the recipe does not
    describe."""
    from compressor.engine.run import recipe_changes, started_recipe
    from compressor.rundir import run_dir_for

    run = run_dir_for(recipe, path)
    begun = started_recipe(run, recipe)
    if begun == recipe:
        return
    raise UserError(
        f"{path}: not the recipe {run.root} was trained with ({recipe_changes(begun, recipe)}); "
        "start over with `compress quickstart --overwrite`"
    )


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


def main() -> None:
    """Console-script entry point: user errors become one line each and exit code 2.

    SIGTERM (a scheduler's or CI job's timeout, torchrun passing one on) stops a command as
    Ctrl-C does: a run's manifest says "interrupted" and the resume command is printed, an
    export keeps the previous one, instead of a silent exit that leaves the run "running".
    A command stopped where it has nothing to say (while it imports torch, say) ends with one
    line that names the signal.

    Output piped into a program that stops reading (`compress --help | head -1`) ends the
    command quietly with exit 141, as a program killed by SIGPIPE does: the handling the
    Python documentation gives (https://docs.python.org/3/library/signal.html#note-on-sigpipe)
    with the exit code a shell's `pipefail` expects, and never 1, which says a check failed.
    """
    try:
        _main()
    except SystemExit as stop:
        # typer ends a command whose output hit a closed pipe with exit 1, raised while it
        # handles the BrokenPipeError: the error is the exit's context.
        if isinstance(stop.__context__, BrokenPipeError):
            _exit_on_closed_pipe()
        raise
    except BrokenPipeError:  # from this function's own output: an error line, click's help
        _exit_on_closed_pipe()


def _main() -> None:
    """Typer runs without its standalone mode so that a usage error (a mistyped flag, a value
    that does not parse, a missing argument) comes back here and is printed like every other
    bad input, one `error:` line, instead of typer's boxed panel after the usage text.
    """
    _stop.signal, _stop.said = None, False
    signal.signal(signal.SIGTERM, _stop_as_ctrl_c)
    try:
        code = app(prog_name="compress", standalone_mode=False)
    except UserError as error:
        if _debug["enabled"]:
            traceback.print_exc()  # the traceback asked for, with bad input's exit code still
        for line in error.lines:
            _print_error(line)
        sys.exit(2)
    except BrokenPipeError:
        raise  # main() ends it quietly
    except ModuleNotFoundError as error:
        if error.name not in _TRAINING_PACKAGES or _debug["enabled"]:
            _crash(error)
        # A deployment box installed without torch (README: gating and ONNX validation).
        words = sys.argv[1:3] if sys.argv[1:2] == ["recipe"] else sys.argv[1:2]
        _print_error(
            f"`compress {' '.join(words)}` needs {error.name}, which is not installed; install "
            "compressor with its dependencies (`pip install -e .` in its clone, as the README "
            "says), or use `compress gate`, which runs without it"
        )
        sys.exit(2)
    except _UsageError as error:
        # A group called with no command: its help, as click shows it (on stderr, exit 2).
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()
        else:
            lines = [_usage_line(error)]
            junit = _junit_of_gate(sys.argv[1:])
            if junit is not None:
                try:
                    _record_gate_error(UserError(*lines), junit)
                except UserError as both:
                    lines = both.lines
            for line in lines:
                _print_error(line)
        sys.exit(2)
    except Exception as error:
        _crash(error)
    # typer.Exit(n), --help and Ctrl-C (130) come back as the exit code; commands return None.
    code = code if isinstance(code, int) else 0
    if code == _CTRL_C_EXIT:
        sigterm = _stop.signal == signal.SIGTERM
        if not _stop.said:  # typer turned the KeyboardInterrupt into this exit, silently
            error_console.print(f"stopped by {'SIGTERM' if sigterm else 'Ctrl-C'}", highlight=False)
        if sigterm:
            code = _SIGTERM_EXIT  # a scheduler reads 128 + 15 as "stopped by my SIGTERM"
    sys.stdout.flush()  # a closed pipe shows here, where main() handles it, not at exit
    sys.exit(code)


def _crash(error: BaseException) -> NoReturn:
    """An exception nobody expected: a bug in compressor or in code a recipe runs (a teacher
    entrypoint). Its traceback is what fixes it, so it is always shown; the exit code is its
    own, so a CI job does not read a crash as 1 (a failed check) or 2 (bad input)."""
    traceback.print_exception(error)
    _print_error(
        f"compress crashed ({type(error).__name__}: {error}): a bug, not bad input or a failed "
        "check; the traceback above says where (in compressor, or in code the recipe runs)"
    )
    sys.exit(_CRASH_EXIT)


_TRAINING_PACKAGES = ("torch", "torchvision")
_CRASH_EXIT = 3
_CTRL_C_EXIT = 128 + signal.SIGINT
_SIGTERM_EXIT = 128 + signal.SIGTERM
_BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE (13); Windows has no signal.SIGPIPE to compute it from


@dataclass
class _Stop:
    """How the command now running was stopped by a signal, if it was."""

    signal: int | None = None  # SIGTERM when it took Ctrl-C's path
    said: bool = False  # the command printed where it stopped and how to go on


_stop = _Stop()


def _stop_as_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM takes Ctrl-C's path (KeyboardInterrupt), remembered so the exit code says which."""
    _stop.signal = signum
    raise KeyboardInterrupt


# typer raises click's UsageError: its own copy of click since typer 0.2x, click itself before.
# The public typer.BadParameter subclasses it in both layouts, so it names the class in either.
_UsageError: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError"
)


def _usage_line(error: Exception) -> str:
    """click's message on one line, and where the command's options are listed."""
    message = " ".join(error.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    misplaced = _misplaced_root_option(error, context)
    if misplaced is not None:
        return misplaced
    see = " See" if message.endswith("?") else "; see"  # after "Did you mean 'distill'?"
    return f"{message}{see} `{context.command_path} --help`"


def _misplaced_root_option(error: Exception, context: typer.Context) -> str | None:
    """`compress distill r.yaml --debug`: click says only "No such option", as --debug and
    --version belong to `compress` itself; say where they go, with the command fixed."""
    option = getattr(error, "option_name", None)
    root = context.find_root()
    if type(error).__name__ != "NoSuchOption" or context is root:
        return None
    if not any(option in param.opts for param in root.command.params):
        return None
    words = list(sys.argv[1:])
    if option in words:
        words.remove(option)
    fixed = ["compress", option] if option == "--version" else ["compress", option, *words]
    return (
        f"{option} is an option of compress itself, not of `{context.command_path}`; put it "
        f"before the command: `{shlex.join(fixed)}`"
    )


def _exit_on_closed_pipe() -> None:
    """Exit 141 without a word: whoever read the output has stopped, and there is nobody to
    tell. Standard output and error point at the null device first, so that flushing them
    as Python exits raises no second BrokenPipeError (the Python documentation's recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        # A stream without a file descriptor (captured by a test) has nothing to flush there.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    sys.exit(_BROKEN_PIPE_EXIT)


def _print_error(line: str) -> None:
    error_console.print(f"error: {line}", highlight=False, soft_wrap=True)
