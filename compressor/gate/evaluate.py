"""`evaluate_gate`: read the run's reports, check they belong together, judge the rules."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from compressor.errors import UserError, warn_caller
from compressor.gate.reports import ExportReport, RunReport, one_row, read_report
from compressor.gate.rules import (
    changed_teacher_note,
    check_deployed_file,
    export_accuracy_rule,
    export_agreement_rule,
    export_command,
    export_flags,
    exported_student,
    reexport_flags,
    speedup_rule,
    student_rule,
)
from compressor.gate.verdict import GateResult
from compressor.io import file_sha256, shared_lock_or_refuse
from compressor.provenance import export_section_hash
from compressor.recipe import GateConfig, Recipe
from compressor.recipe.percent import fraction_for_percent
from compressor.rundir import RunDir, read_completed_run, repair_command
from export.publish import LOCK_NAME, REPORT_JSON, unfinished_publish

BACKENDS = ("onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _validated_overrides(overrides: Mapping[str, float | None] | None) -> dict[str, float]:
    """The thresholds given on the command line, range-checked by the recipe's own model."""
    given = {name: value for name, value in (overrides or {}).items() if value is not None}
    unknown = sorted(set(given) - set(GateConfig.model_fields))
    if unknown:  # a library caller's key: the CLI gives only these
        raise UserError(
            f"overrides: {', '.join(unknown)} is not a gate setting; the settings are "
            f"{', '.join(GateConfig.model_fields)}"
        )
    try:
        GateConfig.model_validate(given)
    except ValidationError as error:
        raise UserError(
            *(
                f"{_flag(str(e['loc'][0]))} {e['input']!r}: "
                + str(e["msg"]).removeprefix("Value error, ")  # pydantic's, not ours
                for e in error.errors()
            )
        ) from None
    return given


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{flag} {value!r} is unknown; choose one of: {', '.join(choices)}")


def _read_run(run: RunDir) -> tuple[Recipe, RunReport]:
    """The run's recipe and report, once the directory is known to hold a completed run."""
    recipe, _ = read_completed_run(run)
    repair = f"repair the run with {repair_command(run, recipe)}"
    report = read_report(run.report("json"), RunReport, "the run report", repair)
    # An edited report without its teacher would have the teacher rule skipped as for a run
    # trained without one: a pass nobody judged.
    if (report.results.teacher is None) != (recipe.teacher is None):
        said = "no teacher result" if report.results.teacher is None else "a teacher result"
        made = "distilled from a teacher" if recipe.teacher else "trained without one"
        raise UserError(
            f"{run.report('json')}: {said}, but the run was {made} (its recipe.yaml); {repair}"
        )
    return recipe, report


def _check_same_student(export: ExportReport, export_path: Path, run: RunDir, again: str) -> None:
    """The export must be of the student.pt the run holds now: a run trained again with the
    same recipe (--overwrite) has the same recipe hash but other weights, and its old export
    would otherwise be gated in the new student's name."""
    if export.student_sha256 is None:
        return
    current = file_sha256(run.student)
    if export.student_sha256 != current:
        raise UserError(
            f"{export_path}: made from another student.pt (sha256 {export.student_sha256[:12]}, "
            f"now {current[:12]}: the run was trained again, or student.pt replaced, since); "
            f"re-export with `{again}`"
        )


@contextmanager
def _no_export_writing(run: RunDir) -> Iterator[None]:
    """Hold export/.lock, shared with other gates, while the export's files are read. An
    export in progress holds it exclusively for its whole length: its report is still the
    previous export's, about to be replaced, and in the moment it publishes, its files are
    part old, part new. Gates share it: the fp32 and int8 gates of one run in parallel CI
    jobs must not refuse each other. Without a lock file no export ever ran here."""
    path = run.export_dir / LOCK_NAME
    release = None
    if path.exists():
        busy = (
            f"{run.export_dir}: an export of this run is in progress; wait for it to end, then gate"
        )
        with contextlib.suppress(OSError):
            release = shared_lock_or_refuse(path, busy)
    try:
        yield
    finally:
        if release is not None:
            release()


def evaluate_gate(
    run_dir: Path | str,
    overrides: Mapping[str, float | None] | None = None,
    *,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    speedup_batch: int | None = None,
    warn: Callable[[str], None] = warn_caller,
) -> GateResult:
    """Judge a run directory against its gate rules.

    `overrides` maps GateConfig field names (max_drop, max_export_drop, min_agreement,
    min_speedup) to flag values; None means "not given, use the recipe's". Raises UserError
    for anything that keeps a rule from being judged, before any verdict is returned.
    `warn` hears of a recipe bar that is likely a slip (a percentage written as a fraction);
    by default it is raised as a CompressorWarning.
    """
    started = time.perf_counter()
    flags = _validated_overrides(overrides)
    _check_choice("--backend", backend, BACKENDS)
    _check_choice("--precision", precision, PRECISIONS)
    if speedup_batch is not None and speedup_batch < 1:
        raise UserError(f"--speedup-batch {speedup_batch}: must be a batch size >= 1")

    run = RunDir(Path(run_dir))
    recipe, report = _read_run(run)
    config = recipe.gate.model_copy(update=flags)
    if "min_agreement" not in flags:  # the run's recipe.yaml may be edited after training
        for warning in fraction_for_percent("gate.min_agreement", config.min_agreement):
            warn(f"{run.recipe}: {warning}")

    with _no_export_writing(run):
        export_path = run.export_dir / REPORT_JSON
        export, again = _read_export(run, export_path, recipe, report, backend, precision)
        student = exported_student(export, export_path, run.root, again, backend, precision)
        reference = one_row(export, export_path, "student", "pytorch", "fp32")
        if reference is None:
            raise UserError(
                f"{export_path}: no PyTorch fp32 student result to compare the export with; "
                f"re-export with `{again}`"
            )
        file_note = check_deployed_file(student, run.root, again)
        rules = [
            student_rule(report, config, flags),
            export_accuracy_rule(student, reference, config),
            export_agreement_rule(student, export_path, config, flags),
            speedup_rule(export, export_path, student, config.min_speedup, speedup_batch),
        ]
        teacher_note = changed_teacher_note(export, export_path, run.root)
        notes = [note for note in (file_note, teacher_note) if note]
        seconds = time.perf_counter() - started
        return GateResult(run.root, backend, precision, rules, seconds, notes)


def _read_export(
    run: RunDir,
    export_path: Path,
    recipe: Recipe,
    report: RunReport,
    backend: str,
    precision: str,
) -> tuple[ExportReport, str]:
    """The export report, once it is known to be whole and made from this run's recipe (its
    `export:` section as recipe.yaml has it now) and its student.pt as they are now; and the
    export to run where it is not, or lacks the judged file: one that makes that file, and
    keeps the ones a readable report lists."""
    again = export_command(run.root, *export_flags(backend, precision))
    killed = unfinished_publish(run.export_dir)
    if killed is not None:
        raise UserError(
            f"{run.export_dir}: an export of this run stopped while putting its files in "
            f"place (killed, or a file it could not replace; {killed.name} holds the rest), so "
            f"they are part old, part new; re-export with `{again}`, which completes that one "
            "first"
        )
    export = read_report(
        export_path, ExportReport, "the export report", f"export the run with `{again}`"
    )
    # The export section first: edited through --resume, it changes the recipe's hash too,
    # and "other export settings" says what changed.
    section = export_section_hash(recipe)
    # A calibration count other than the recipe's came from --calibration-images, and the
    # re-export gives it again; where the section was edited since, the recipe's is meant.
    unedited = export.export_section_sha256 in (None, section)
    calibration = recipe.export.int8.calibration_images if unedited else None
    flags = reexport_flags(export, run.root, backend, precision, calibration)
    again = export_command(run.root, *flags)
    if export.export_section_sha256 not in (None, section):
        raise UserError(
            f"{export_path}: made with other export settings than the `export:` section of "
            f"{run.recipe} has now (edited since); re-export with `{again}`"
        )
    if export.recipe_sha256 != report.recipe_sha256:
        raise UserError(
            f"{export_path}: made for another recipe (sha256 {export.recipe_sha256[:12]}; the "
            f"run's recipe: {report.recipe_sha256[:12]}); re-export with `{again}`"
        )
    # The rules put the run's accuracies beside the export's: of one test split, or nothing.
    # (An export refuses test images other than the run's where the run recorded its file
    # lists; this also holds for runs made before it did.)
    scored, evaluated = report.results.test_samples, export.eval_samples
    if None not in (scored, evaluated) and scored != evaluated:
        raise UserError(
            f"{export_path}: scored the student on {evaluated:,} test images, the run's report "
            f"on {scored:,}: the test data changed between training and the export; give the "
            f"data the run was trained on and re-export with `{again}`"
        )
    _check_same_student(export, export_path, run, again)
    return export, again
