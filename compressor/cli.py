"""The `compress` commands and their arguments. Thin: parse arguments, call library functions,
print what they return; compressor/entry.py turns errors and signals into exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

import compressor
from compressor.errors import UserError
from compressor.interrupt import stop
from compressor.quickstart import run_quickstart
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

# Set by --debug: compressor/entry.py then prints the traceback of bad input and of a missing torch.
debug_mode = {"enabled": False}


class _Command(typer.core.TyperCommand):
    """A command whose usage line names a required argument as click does, `compress export
    RUN`, as the README and the messages write it, not as typer's `{RUN}`."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
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


# What torchrun may start several processes of: each of any other command would do all of
# its work (an export, a whole quickstart) at once with the others, and they waited on each
# other for good, or failed with a message that sent the user round again.
_MULTI_PROCESS = ("train", "distill")


def under_torchrun() -> bool:
    """Is this one of several processes torchrun started (WORLD_SIZE > 1)?"""
    return os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1")


@app.callback()
def _root(
    context: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    debug_mode["enabled"] = debug
    command = context.invoked_subcommand
    if command not in (None, *_MULTI_PROCESS) and under_torchrun():
        raise UserError(
            f"compress {command} runs in one process: run it without torchrun, which starts "
            f"several for {' and '.join(_MULTI_PROCESS)} only"
        )


@recipe_app.command(
    "validate", cls=_Command, short_help="Check a recipe without reading data or training."
)
def recipe_validate(path: RecipeFile) -> None:
    """Check a recipe without reading the data or training; one line per problem.

    Checks the schema, files, architectures, class counts, that the student builds and the
    teacher loads (building it runs the entrypoint a recipe names) and gives one logit per
    class, that a feature-space triplet compares layers of one width, and that the run
    directory can be made; warns about a train.device this machine lacks, a percentage
    written as a fraction, and a teacher the method does not learn from. `compress teacher`
    also scores the teacher.
    """
    from compressor.preflight import (
        check_models_build,
        check_recipe,
        device_warnings,
        setting_warnings,
        unused_settings,
    )
    from compressor.recipe import load_recipe
    from compressor.rundir import check_run_dir_can_be_made, run_dir_for

    recipe = load_recipe(path)
    check_recipe(recipe, str(path), needs_teacher=False)
    check_run_dir_can_be_made(run_dir_for(recipe, path))
    check_models_build(recipe, str(path))
    # A recipe with a teacher is meant for `compress distill` (`train` ignores the teacher).
    unused = unused_settings(recipe, distill=True) if recipe.teacher is not None else []
    for warning in [*device_warnings(recipe), *setting_warnings(recipe), *unused]:
        print_warning(f"{path}: {warning}")
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
    from compressor.io import WriteFailed, write_text
    from compressor.recipe import recipe_schema

    schema = recipe_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        _refuse_replacing_other_than_a_schema(output, schema["title"])
        try:
            write_text(output, text)
        except WriteFailed as error:
            raise UserError(f"{output}: cannot write the schema ({error.strerror})") from None
        console.print(f"wrote {output}")


def _refuse_replacing_other_than_a_schema(output: Path, title: str) -> None:
    """`-o` replaces an earlier schema, never a recipe or a run's recipe.yaml (a resume would
    then find the run's recipe unreadable): an existing file must hold our schema or nothing.
    A folder (`-o ''` is the current one) is named as such, not as a failed write."""
    from compressor.io import loads_json, regular_or_absent

    if output.is_dir():
        raise UserError(
            f"--output {str(output)!r}: is a folder; give a file name, such as recipe.schema.json"
        )
    if not regular_or_absent(output):
        raise UserError(
            f"--output {output}: not a regular file (a device, pipe or socket), which the schema "
            "would replace or block on; give a file name, such as recipe.schema.json"
        )
    if not output.is_file() or output.stat().st_size == 0:
        return
    try:
        earlier = loads_json(output.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        earlier = None
    if not (isinstance(earlier, dict) and earlier.get("title") == title):
        raise UserError(
            f"{output}: exists and is not a recipe schema written by compress, so it is not "
            "replaced; give another name, such as recipe.schema.json"
        )


@app.command("models", short_help="List the model zoo's architectures.")
def models_command() -> None:
    """List the model zoo's architectures (any torchvision classifier name works too)."""
    from compressor.models import list_models

    for name in list_models():
        console.print(name)


@app.command("teacher", cls=_Command, short_help="Measure the recipe's teacher on its test set.")
def teacher_command(path: RecipeFile) -> None:
    """Load the recipe's teacher and measure its test accuracy: the check before distilling."""
    from compressor.engine.teacher import check_teacher
    from compressor.preflight import setting_warnings
    from compressor.recipe import load_recipe

    recipe = load_recipe(path)
    prepared = check_teacher(recipe, str(path))
    # As `recipe validate` and a run say them: teacher.min_accuracy 0.9 (a fraction, where
    # a percentage is meant) is this command's own bar.
    for warning in [*setting_warnings(recipe), *prepared.warnings]:
        print_warning(f"{path}: {warning}")
    summary = prepared.summary
    console.print(
        f"teacher: test top-1 {summary.accuracy:.2f} % on {prepared.evaluation.count:,} "
        f"images, {summary.parameters:,} parameters, {summary.flops / 1e6:,.1f} MFLOPs per image"
    )


@app.command("train", cls=_Command, short_help="Train the recipe's student with cross-entropy.")
def train_command(path: RecipeFile, resume: Resume = False, overwrite: Overwrite = False) -> None:
    """Train the recipe's student from scratch with cross-entropy (no teacher).

    Use it for the CE baseline, or to train a teacher: name the teacher's architecture as the
    student.
    """
    train_and_print(path, distill=False, resume=resume, overwrite=overwrite)


@app.command(
    "distill", cls=_Command, short_help="Distil the teacher into the student (AMKD, KD, ...)."
)
def distill_command(path: RecipeFile, resume: Resume = False, overwrite: Overwrite = False) -> None:
    """Distil the recipe's teacher into its student with the recipe's method (AMKD, KD, ...)."""
    train_and_print(path, distill=True, resume=resume, overwrite=overwrite)


def _threshold_option(field: str, help_text: str) -> typer.models.OptionInfo:
    return typer.Option(f"--{field}", help=f"{help_text} Default: the recipe's gate section.")


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
    """Check a run against its quality gate: exit 0 if all rules pass, 1 if any fails, 2 on
    bad input (no such run, an unfinished run, a missing or stale export, a bad flag)."""
    from compressor.gate import evaluate_gate
    from compressor.recipe.percent import fraction_for_percent
    from compressor.reporting.junit import (
        check_junit_path,
        refuse_run_file,
        suite_name,
        write_junit,
        write_junit_error,
    )

    for warning in fraction_for_percent("--min-agreement", min_agreement):
        print_warning(warning)
    suite = suite_name(run, backend, precision)
    if junit is not None:
        refuse_run_file(junit, run)
        check_junit_path(junit)
        # First, in place of an earlier verdict: a gate stopped or killed before its own
        # (Ctrl-C, a CI job's timeout) leaves this error in the file, not that verdict.
        write_junit_error(
            UserError(f"the gate of {run} did not finish (stopped or killed); run it again"),
            junit,
            suite,
        )
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
            warn=print_warning,
        )
    except UserError as error:
        if junit is not None:
            record_gate_error(error, junit, suite)
        raise
    except Exception as crash:  # a bug: still no earlier passing verdict left in the file
        if junit is not None:
            with contextlib.suppress(UserError):
                said = UserError(f"the gate crashed: {crash!r}")
                record_gate_error(said, junit, suite, kind=type(crash).__name__)
        raise
    if junit is not None:
        # Before the table: output cut short (a closed pipe, a Ctrl-C while it prints) must
        # not leave an earlier verdict in the file that CI shows.
        write_junit(result, junit)
        console.print(f"wrote {junit}", highlight=False)
    print_gate(result)  # the verdict last: the line a CI log ends with (`tail -1`)
    if not result.passed:
        raise typer.Exit(1)


def record_gate_error(
    error: UserError, junit: Path, suite: str | None = None, kind: str = "UserError"
) -> None:
    """The gate could not run: say so in the JUnit file, so a CI job does not go on showing an
    earlier, passing verdict. If that file cannot be written either, both problems are told.
    A file of a run is never written over, whichever run: after a usage error the command's
    RUN is not known, so the run is the one the file lies in."""
    from compressor.reporting.junit import (
        SUITE_NAME,
        enclosing_run,
        refuse_run_file,
        write_junit_error,
    )

    try:
        run = enclosing_run(junit)
        if run is not None:
            refuse_run_file(junit, run)
        write_junit_error(error, junit, suite or SUITE_NAME, kind)
    except UserError as unwritable:
        raise UserError(*error.lines, *unwritable.lines) from None


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
            help="Validate and time with ONNX Runtime. The ONNX files are written either way "
            "(with --student-onnx, that file is the student's).",
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
        typer.Option(
            help="Validate this ONNX file (optimised, quantised) as the student, instead of "
            "exporting student.pt (no export/student.onnx is written)."
        ),
    ] = None,
) -> None:
    """Export the run's student (and teacher) to ONNX (+ TensorRT), validate and time them.

    Checks parity and accuracy on the run's test set, times every backend, and writes
    export/export_report.json|md|html.
    """
    from compressor.recipe.percent import fraction_for_percent
    from export import ExportOptions, export_run
    from export.pipeline import InterruptedOncePublished

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
    for warning in fraction_for_percent("--min-agreement", min_agreement):
        print_warning(warning)
    try:
        report = export_run(run, options, log=lambda line: console.print(line), warn=print_warning)
    except InterruptedOncePublished as late:
        _stopped_once_published(late.report)
    except KeyboardInterrupt:
        # The export is staged and swapped in only when it finishes: the previous one is intact.
        stop.said = True
        error_console.print(
            f"export interrupted: run `{shlex.join(['compress', *sys.argv[1:]])}` again to "
            "finish it; the previous export is as it was",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    try:
        print_export(report)
        console.print(f"reports: {shell_path(report.files['html'])} (also .md, .json)")
    except KeyboardInterrupt:
        _stopped_once_published(report)
    if report.problems:
        raise UserError(*report.problems)
    failed = students_failing_parity(report)
    if failed:
        # Like a failed gate rule: the export and its reports are written, and CI sees a fail.
        console.print(f"export FAILED: parity with PyTorch for {failed}")
        raise typer.Exit(1)


def _stopped_once_published(report: ExportReport) -> NoReturn:
    """Ctrl-C or SIGTERM after the export was in place: it is complete, and saying "run it
    again" would send the user to redo it."""
    stop.said = True
    error_console.print(
        f"export complete, then stopped: reports in {shell_path(report.files['html'])} (also "
        ".md, .json)",
        highlight=False,
    )
    raise typer.Exit(130)


@app.command("quickstart", short_help="The whole flow on embedded data, no download.")
def quickstart_command(
    recipes: Annotated[
        Path | None,
        typer.Option(
            help="Folder with quickstart-teacher.yaml and quickstart.yaml. Default: recipes/ "
            "where it holds them, else the copies installed with compressor.",
            show_default=False,
        ),
    ] = None,
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
    run_quickstart(recipes, overwrite=overwrite)
