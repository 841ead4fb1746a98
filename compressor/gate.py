"""The CI gate: decide from a run's reports whether its student may ship.

`compress gate RUN` measures nothing itself. It reads what distillation and export already
measured — RUN/report.json and RUN/export/export_report.json — so a gate job needs no GPU, no
data set and no model files, and its verdict is reproducible from the run directory alone.
Thresholds come from the `gate:` section of RUN/recipe.yaml (the resolved recipe, so the run
carries its own acceptance criteria) and flags override them.

The rules, in table order (all in percentage points unless said otherwise):

- `student_accuracy`: student top-1 ≥ teacher top-1 − max_drop (report.json). A run trained
  without a teacher (`compress train`) has nothing to compare with: the rule is SKIPPED with
  the reason shown in the table and as JUnit <skipped>, so it is visible instead of a silent
  pass. An explicit `--max-drop` on such a run asks for a check that cannot be made and is
  bad input (exit 2), not a skip.
- `export_accuracy`: exported student (chosen backend and precision) top-1 ≥ PyTorch student
  top-1 − max_export_drop. Both numbers come from the export report, which scores both on
  the same evaluation set; report.json's accuracy may be on a different subset.
- `export_agreement`: top-1 agreement of the exported student with the PyTorch fp32 student
  ≥ min_agreement for fp32. fp16 and int8 logits legitimately move a few borderline
  decisions, so they are held to the bar `compress export` applied to them (recorded in the
  export report: export.fp16_min_agreement / export.int8_min_agreement) unless
  --min-agreement is given.
- `speedup`: teacher p50 / student p50 latency on the chosen backend ≥ min_speedup, at the
  largest batch both were timed at (the throughput batch: batch 1 is dominated by per-call
  overhead and hides what compression bought) unless a batch is given. The student is the
  row at the chosen precision; the teacher is the row at the same precision, or at fp32 when
  that is all there is (the exporter converts the teacher to int8 with --int8, never to
  fp16) — the baseline is the teacher deployed the same way, without distillation. Computed
  from the rows rather than read from the report's `speedup` map, which holds fp32 against
  fp32 only. SKIPPED when min_speedup is not set; once set (flag or recipe), missing timings
  are bad input, never a skip. A --speedup-batch that was not timed for both is bad input
  even when the rule is skipped: the user asked about that batch. A timing the export found
  noisy (coefficient of variation above export/latency.py's bar) leaves the verdict as it is
  and says so in the rule's detail; so does a teacher file that failed parity with PyTorch
  (the export only warns of it: the teacher does not ship).

Anything that stops a rule from being judged — a run that is not completed, missing or
corrupt reports, an export made for another recipe, a backend or precision that was not
exported, out-of-range or nan thresholds — is a `UserError` (exit 2), so a broken
pipeline can never read as a pass or as a quality fail.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from compressor.errors import UserError
from compressor.io import file_sha256, lock_or_refuse
from compressor.provenance import SCHEMA_VERSION
from compressor.recipe import GateConfig, Recipe, format_validation_error
from compressor.rundir import RunDir, read_completed_run, repair_command
from export.latency import NOISY_CV
from export.publish import LOCK_NAME, REPORT_JSON, unfinished_publish

BACKENDS = ("onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")

# Measured accuracies and agreements pass through float32 (99.5 % of samples reads back as
# 99.4999993 %), while thresholds are typed as short decimals. This slack keeps rounding from
# flipping a verdict; it is far below one sample of any real test set (1e-3 points at 100k),
# and for speedups far below timing noise.
_SLACK = 1e-4

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict. `measured`/`threshold` are None when a skipped rule has none."""

    name: str
    measured: float | None
    threshold: float | None
    status: Status
    detail: str
    unit: Literal["%", "×"] = "%"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    @property
    def skipped(self) -> bool:
        return self.status == "SKIP"

    @property
    def measured_text(self) -> str:
        return _format(self.measured, self.unit)

    @property
    def threshold_text(self) -> str:
        return "—" if self.threshold is None else f"≥ {_format(self.threshold, self.unit)}"

    @property
    def summary(self) -> str:
        """One line for logs and JUnit messages: the numbers first, then how they were got."""
        if self.skipped:
            return f"{self.name}: skipped: {self.detail}"
        return (
            f"{self.name}: {self.status}: measured {self.measured_text}, "
            f"needs {self.threshold_text} ({self.detail})"
        )


@dataclass(frozen=True)
class GateResult:
    run: Path
    backend: str
    precision: str
    rules: list[RuleResult]
    seconds: float

    @property
    def failed(self) -> list[RuleResult]:
        return [rule for rule in self.rules if rule.failed]

    @property
    def passed(self) -> bool:
        """Skipped rules do not fail the gate; they are shown so nobody mistakes them for passes."""
        return not self.failed


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} %" if unit == "%" else f"{value:.2f}×"


def _judge(
    name: str, measured: float, threshold: float, detail: str, unit: Literal["%", "×"] = "%"
) -> RuleResult:
    status: Status = "PASS" if measured >= threshold - _SLACK else "FAIL"
    return RuleResult(name, measured, threshold, status, detail, unit)


# The reports as the gate reads them: only the fields it uses (pydantic ignores the rest), so the
# exporter can add fields without breaking the gate while a missing or mistyped field still
# surfaces as one precise line (file, field path, problem).
class _Report(BaseModel):
    schema_version: int
    recipe_sha256: str


# A percentage in a report is a number from 0 to 100: NaN, infinities and anything else mean
# a broken pipeline, never a pass or a quality fail.
Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class _Score(BaseModel):
    accuracy: Percent


class _RunResults(BaseModel):
    student: _Score
    teacher: _Score | None


class _RunReport(_Report):
    results: _RunResults


class _Parity(BaseModel):
    max_abs_diff: float | None  # null when the exported model's outputs are not finite
    top1_agreement: Percent
    min_agreement: Percent
    passed: bool  # the export's verdict, by its tolerance for the file's precision


def _difference(parity: _Parity) -> str:
    return "not finite" if parity.max_abs_diff is None else f"{parity.max_abs_diff:.2g}"


class _Latency(BaseModel):
    p50_ms: float = Field(gt=0.0)
    cv: float | None = Field(None, ge=0.0)  # None: a report from before it was recorded


class _ExportRow(BaseModel):
    model: Literal["student", "teacher"]
    backend: str
    precision: str
    device: str
    accuracy: Percent
    parity: _Parity | None
    latency: dict[int, _Latency] = Field(default_factory=dict)
    file: str | None = None  # relative to the run directory, or absolute
    sha256: str | None = None  # None: a report from before it was recorded

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


class _ExportReport(_Report):
    results: list[_ExportRow]
    student_sha256: str | None = None  # absent from reports written before it was recorded


ReportT = TypeVar("ReportT", bound=_Report)


def _read_report(path: Path, model: type[ReportT], what: str, remedy: str) -> ReportT:
    """Read and check one JSON record of the run; `what` names it when a folder stands in its
    place, `remedy` is what to run to (re)write it."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not {what}; remove it, then {remedy}")
    if not path.is_file():
        raise UserError(f"{path}: not found; {remedy}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            f"{remedy}"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; {remedy}") from None
    try:
        report = model.model_validate(data)
    except ValidationError as error:
        raise UserError(*format_validation_error(str(path), error)) from None
    if report.schema_version != SCHEMA_VERSION:
        raise UserError(
            f"{path}: schema_version {report.schema_version}, but this compressor reads "
            f"{SCHEMA_VERSION}; gate it with the compressor version that wrote it"
        )
    return report


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _validated_overrides(overrides: Mapping[str, float | None] | None) -> dict[str, float]:
    """The thresholds given on the command line, range-checked by the recipe's own model."""
    given = {name: value for name, value in (overrides or {}).items() if value is not None}
    try:
        GateConfig.model_validate(given)
    except ValidationError as error:
        raise UserError(
            *(f"{_flag(str(e['loc'][0]))} {e['input']!r}: {e['msg']}" for e in error.errors())
        ) from None
    return given


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{flag} {value!r} is unknown; choose one of: {', '.join(choices)}")


def _one_row(
    export: _ExportReport, path: Path, model: str, backend: str, precision: str
) -> _ExportRow | None:
    rows = [
        row
        for row in export.results
        if (row.model, row.backend, row.precision) == (model, backend, precision)
    ]
    if len(rows) > 1:
        devices = ", ".join(row.device for row in rows)
        raise UserError(
            f"{path}: {len(rows)} {model} {backend} {precision} results (devices {devices}); "
            "the gate needs exactly one, re-export"
        )
    return rows[0] if rows else None


def _exported_student(
    export: _ExportReport, path: Path, run: Path, backend: str, precision: str
) -> _ExportRow:
    row = _one_row(export, path, "student", backend, precision)
    if row is not None:
        return row
    exported = sorted(
        {r.label for r in export.results if r.model == "student" and r.backend != "pytorch"}
    )
    flags = {"tensorrt": " --trt"}.get(backend, "") + {
        "fp16": " --fp16",
        "int8": " --int8",
    }.get(precision, "")
    where = " on a machine with an NVIDIA GPU and TensorRT" if backend == "tensorrt" else ""
    raise UserError(
        f"{path}: no {backend} {precision} student (exported: {', '.join(exported) or 'none'}); "
        f"run `compress export {run}{flags}`{where}, or gate an exported one with "
        "--backend/--precision"
    )


def _check_deployed_file(student: _ExportRow, run: Path) -> str:
    """The judged file, when it is here, must be the one the export measured: a truncated or
    replaced model would otherwise ship under the report's verdict. A gate job may have the
    reports alone, so a missing file is said in the verdict's detail rather than refused."""
    if student.file is None or student.sha256 is None:
        return ""
    path = Path(student.file) if Path(student.file).is_absolute() else run / student.file
    if not path.is_file():
        return f"; {path} is not here: judged from the export report alone"
    if file_sha256(path) != student.sha256:
        raise UserError(
            f"{path}: not the file the export measured (its sha256 differs from the export "
            f"report's); re-export with `compress export {run}`"
        )
    return ""


def _student_rule(report: _RunReport, config: GateConfig, flags: dict[str, float]) -> RuleResult:
    student, teacher = report.results.student.accuracy, report.results.teacher
    if teacher is None:
        if "max_drop" in flags:
            raise UserError(
                "--max-drop compares the student with its teacher, but this run was trained "
                "without one (compress train); drop --max-drop"
            )
        return RuleResult(
            "student_accuracy",
            student,
            None,
            "SKIP",
            "run has no teacher (trained with `compress train`); nothing to compare with",
        )
    return _judge(
        "student_accuracy",
        student,
        teacher.accuracy - config.max_drop,
        f"teacher {teacher.accuracy:.2f} % − max_drop {config.max_drop:g}",
    )


def _speedup_teacher(export: _ExportReport, path: Path, student: _ExportRow) -> _ExportRow | None:
    """The teacher at the student's precision, or at fp32: it is never converted to fp16."""
    return _one_row(export, path, "teacher", student.backend, student.precision) or _one_row(
        export, path, "teacher", student.backend, "fp32"
    )


def _speedup_batch(path: Path, student: _ExportRow, teacher: _ExportRow, batch: int | None) -> int:
    """The asked batch, checked against the timings, else the largest batch both were timed at."""
    batches = sorted(set(student.latency) & set(teacher.latency))
    if not batches:
        raise UserError(
            f"{path}: the {student.label} student and {teacher.label} teacher share no timed "
            "batch size"
        )
    if batch is None:
        return batches[-1]
    if batch not in batches:
        measured = ", ".join(map(str, batches))
        raise UserError(
            f"--speedup-batch {batch}: not timed for {student.label}; timed batches: {measured} "
            "(set by export.batch_sizes or `compress export --batch-sizes`)"
        )
    return batch


def _speedup_rule(
    export: _ExportReport,
    path: Path,
    student: _ExportRow,
    min_speedup: float | None,
    batch: int | None,
) -> RuleResult:
    skipped = RuleResult("speedup", None, None, "SKIP", "min_speedup is not set", "×")
    if min_speedup is None and batch is None:
        return skipped
    teacher = _speedup_teacher(export, path, student)
    if teacher is None and min_speedup is not None:
        raise UserError(
            f"{path}: no teacher {student.backend} timing, which min_speedup needs; the run must "
            "have a teacher and the export must time it, or leave min_speedup unset"
        )
    if teacher is None:
        raise UserError(
            f"--speedup-batch {batch}: {path} has no teacher {student.backend} timing to "
            "compare the student with; drop --speedup-batch"
        )
    batch = _speedup_batch(path, student, teacher, batch)
    if min_speedup is None:
        return skipped  # the batch asked about was still checked
    teacher_ms, student_ms = teacher.latency[batch].p50_ms, student.latency[batch].p50_ms
    return _judge(
        "speedup",
        teacher_ms / student_ms,
        min_speedup,
        f"{student.backend} batch {batch}: teacher {teacher.precision} p50 {teacher_ms:.3g} ms"
        f" / student {student.precision} p50 {student_ms:.3g} ms"
        + _noise_note(teacher.latency[batch], student.latency[batch])
        + _teacher_parity_note(teacher),
        "×",
    )


def _teacher_parity_note(teacher: _ExportRow) -> str:
    """Say so when the timed teacher file failed parity with PyTorch (the export warned, and
    exited 0: only the student ships). The speedup is then against a graph that computes
    something else, which may run faster or slower than the teacher does."""
    if teacher.parity is None or teacher.parity.passed:
        return ""
    return (
        f"; the teacher's {teacher.label} file failed parity with PyTorch (max |Δ| "
        f"{_difference(teacher.parity)}, top-1 agreement {teacher.parity.top1_agreement:.2f} %), "
        "so its timing may not be the teacher's: see the export report's warning"
    )


def _noise_note(teacher: _Latency, student: _Latency) -> str:
    """Say so when a timing behind the speedup was noisy (the export warned too): a verdict
    near the bar may flip on a re-run, and CI logs should show why."""
    noisy = [
        f"{model} CV {timing.cv:.2f}"
        for model, timing in (("teacher", teacher), ("student", student))
        if timing.cv is not None and timing.cv > NOISY_CV
    ]
    if not noisy:
        return ""
    return (
        f"; noisy timing ({', '.join(noisy)} > {NOISY_CV:g}): other load on the machine, "
        "so re-export on a quiet one before trusting a verdict near the bar"
    )


def _read_run(run: RunDir) -> tuple[Recipe, _RunReport]:
    """The run's recipe and report, once the directory is known to hold a completed run."""
    recipe, _ = read_completed_run(run)
    report = _read_report(
        run.report("json"),
        _RunReport,
        "the run report",
        f"repair the run with {repair_command(run, recipe)}",
    )
    return recipe, report


def _check_same_student(export: _ExportReport, export_path: Path, run: RunDir) -> None:
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
            f"re-export with `compress export {run.root}`"
        )


@contextmanager
def _no_export_writing(run: RunDir) -> Iterator[None]:
    """Hold export/.lock while the export's files are read. An export in progress holds it for
    its whole length: its report is still the previous export's, about to be replaced, and
    in the moment it publishes, its files are part old, part new. Without a lock file no
    export ever ran here; where it cannot be taken (a read-only copy) none can be writing."""
    path = run.export_dir / LOCK_NAME
    lock = None
    if path.exists():
        busy = (
            f"{run.export_dir}: an export of this run is in progress; wait for it to end, then gate"
        )
        with contextlib.suppress(OSError):
            lock = lock_or_refuse(path, busy)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def evaluate_gate(
    run_dir: Path,
    overrides: Mapping[str, float | None] | None = None,
    *,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    speedup_batch: int | None = None,
) -> GateResult:
    """Judge a run directory against its gate rules.

    `overrides` maps GateConfig field names (max_drop, max_export_drop, min_agreement,
    min_speedup) to flag values; None means "not given, use the recipe's". Raises UserError
    for anything that keeps a rule from being judged, before any verdict is returned.
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

    with _no_export_writing(run):
        export_path = run.export_dir / REPORT_JSON
        killed = unfinished_publish(run.export_dir)
        if killed is not None:
            raise UserError(
                f"{run.export_dir}: an export of this run was killed while putting its files in "
                f"place ({killed.name} holds the rest), so they are part old, part new; re-export "
                f"with `compress export {run.root}`, which completes that one first"
            )
        export = _read_report(
            export_path,
            _ExportReport,
            "the export report",
            f"export the run with `compress export {run.root}`",
        )
        if export.recipe_sha256 != report.recipe_sha256:
            raise UserError(
                f"{export_path}: made for another recipe (sha256 {export.recipe_sha256[:12]}, run "
                f"{report.recipe_sha256[:12]}); re-export with `compress export {run.root}`"
            )
        _check_same_student(export, export_path, run)
        student = _exported_student(export, export_path, run.root, backend, precision)
        reference = _one_row(export, export_path, "student", "pytorch", "fp32")
        if reference is None:
            raise UserError(
                f"{export_path}: no PyTorch fp32 student result to compare the export with; "
                f"re-export with `compress export {run.root}`"
            )
        if student.parity is None:
            raise UserError(f"{export_path}: the {student.label} student has no parity results")
        file_note = _check_deployed_file(student, run.root)

        agreement_floor = (
            config.min_agreement
            if precision == "fp32" or "min_agreement" in flags
            else student.parity.min_agreement
        )
        rules = [
            _student_rule(report, config, flags),
            _judge(
                "export_accuracy",
                student.accuracy,
                reference.accuracy - config.max_export_drop,
                f"{student.label} vs PyTorch {reference.accuracy:.2f} % − max_export_drop "
                f"{config.max_export_drop:g}{file_note}",
            ),
            _judge(
                "export_agreement",
                student.parity.top1_agreement,
                agreement_floor,
                f"{student.label} vs PyTorch fp32 top-1, max |Δ| {_difference(student.parity)}"
                + ("" if agreement_floor == config.min_agreement else " (export's bar for it)"),
            ),
            _speedup_rule(export, export_path, student, config.min_speedup, speedup_batch),
        ]
        return GateResult(run.root, backend, precision, rules, time.perf_counter() - started)
