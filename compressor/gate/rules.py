"""The gate's rules, each judged from rows of the reports: the student against its teacher,
the exported student against the PyTorch one (accuracy, agreement), and the speedup over the
teacher deployed the same way, with the notes a verdict near its bar needs."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable
from pathlib import Path

from compressor.errors import UserError
from compressor.gate.reports import ExportReport, ExportRow, Latency, RunReport, difference, one_row
from compressor.gate.verdict import RuleResult, judge
from compressor.io import file_sha256
from compressor.recipe import GateConfig
from export.latency import NOISY_SPREAD, is_noisy, spread_text


def export_command(run: Path, *flags: str) -> str:
    """The export to run, pasteable: a run path with spaces or quotes is quoted."""
    return shlex.join(["compress", "export", str(run), *flags])


_FLAG_OF = {"tensorrt": "--trt", "fp16": "--fp16", "int8": "--int8"}


def export_flags(backend: str, precision: str, exported: Iterable[ExportRow] = ()) -> list[str]:
    """The `compress export` flags that make the file a gate of `backend` and `precision`
    judges, and the students already `exported`: a re-export without a flag removes the
    files it made (following a `--int8` hint would delete the fp16 student). TensorRT's only
    when the gate judges it: `--trt` is refused where no GPU is, as on a CI box gating the
    ONNX Runtime file of an export made on a GPU machine."""
    made = {
        (backend, precision),
        *(
            (r.backend, r.precision)
            for r in exported
            if r.model == "student" and (r.backend != "tensorrt" or backend == "tensorrt")
        ),
    }
    wanted = {_FLAG_OF.get(part) for pair in made for part in pair}
    return [flag for flag in _FLAG_OF.values() if flag in wanted]


def reexport_flags(
    export: ExportReport, run: Path, backend: str, precision: str, calibration_images: int | None
) -> list[str]:
    """export_flags for the export that makes `export` anew: with the --student-onnx file it
    measured given again, or the re-export would measure a student exported from student.pt
    in its place. The given file's own precision takes no flag (`--int8` with an INT8 file is
    refused: it quantises an fp32 one). INT8 files calibrated on another count than the
    recipe's `calibration_images` were given --calibration-images: given again (None: the
    recipe's count is meant, whatever the files were calibrated on)."""
    flags = export_flags(backend, precision, export.results)
    calibrated = export.int8.calibration_images if export.int8 else None
    if (
        "--int8" in flags
        and None not in (calibrated, calibration_images)
        and (calibrated != calibration_images)
    ):
        flags += ["--calibration-images", str(calibrated)]
    given = export.student_onnx
    if given is None:
        return flags
    own = _FLAG_OF.get(given.precision)
    path = run / given.file  # an absolute file stays as it is
    return [flag for flag in flags if flag != own] + ["--student-onnx", str(path)]


def exported_student(
    export: ExportReport, path: Path, run: Path, again: str, backend: str, precision: str
) -> ExportRow:
    """The judged student's row; without one, the export to run (`again`) that makes it."""
    row = one_row(export, path, "student", backend, precision)
    if row is not None:
        return row
    rows = sorted(
        {
            (r.backend, r.precision)
            for r in export.results
            if r.model == "student" and r.backend != "pytorch"
        }
    )
    exported = ", ".join(f"{b} {p}" for b, p in rows) or "none"
    where = " on a machine with an NVIDIA GPU and TensorRT" if backend == "tensorrt" else ""
    given = export.student_onnx
    if given is not None and precision == "fp32" and given.precision != "fp32":
        # No export of the given file makes an fp32 student: only one of student.pt does.
        mine = [r for r in export.results if r.model != "student" or r.file != given.file]
        again = export_command(run, *export_flags(backend, precision, mine))
        where += f" (it exports the run's student.pt in place of --student-onnx {given.file})"
    # The flags that gate what is there: the export to run would replace a --student-onnx
    # file (an INT8 one, say) with students exported from student.pt.
    judged = " or ".join(f"--backend {b} --precision {p}" for b, p in rows)
    raise UserError(
        f"{path}: no {backend} {precision} student (exported: {exported}); "
        f"run `{again}`{where}" + (f", or gate an exported one with {judged}" if rows else "")
    )


def check_deployed_file(student: ExportRow, run: Path, again: str) -> str:
    """The judged file, when it is here, must be the one the export measured: a truncated or
    replaced model would otherwise ship under the report's verdict. A gate job may have the
    reports alone, so a missing file is said with the verdict (the note returned) rather
    than refused. `again`: the export that makes it anew, keeping the students exported."""
    if student.file is None or student.sha256 is None:
        return ""
    path = run / student.file  # an absolute file stays as it is
    try:
        here = path.is_file()
    except OSError as error:  # a name too long for the file system, say: an edited report
        raise UserError(
            f"the export report's {student.label} student file {student.file[:80]!r}: "
            f"{error.strerror}; re-export with `{again}`"
        ) from error
    if not here:
        return f"{path} is not here: judged from the export report alone"
    if file_sha256(path) != student.sha256:
        raise UserError(
            f"{path}: not the file the export measured (its sha256 differs from the export "
            f"report's); re-export with `{again}`"
        )
    return ""


def changed_teacher_note(export: ExportReport, export_path: Path, run: Path) -> str:
    """Say so when the teacher checkpoint the export read has changed since (a teacher
    trained again in place). Not a refusal: what the gate judges, the teacher's accuracy in
    report.json and its exported timing, is of the teacher the student was distilled from;
    but `compress export` now refuses the run, and the student may be worth distilling
    again. A teacher file not here says nothing: a gate job may have the run alone."""
    row = one_row(export, export_path, "teacher", "pytorch", "fp32")
    if row is None or row.file is None or row.sha256 is None:
        return ""
    path = run / row.file  # an absolute file stays as it is
    with contextlib.suppress(OSError):
        if path.is_file() and (now := file_sha256(path)) != row.sha256:
            return (
                f"the teacher {path} has changed since the export (sha256 {row.sha256[:12]}, "
                f"now {now[:12]}): judged against the teacher the student was distilled from"
            )
    return ""


def _accuracy_bar(bar: float) -> float:
    """A drop allowed past the whole accuracy (max_drop 100) is a bar of 0 %, which every
    accuracy meets alike: "needs ≥ -7.35 %" would read as a figure."""
    return max(bar, 0.0)


def student_rule(report: RunReport, config: GateConfig, flags: dict[str, float]) -> RuleResult:
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
    return judge(
        "student_accuracy",
        student,
        _accuracy_bar(teacher.accuracy - config.max_drop),
        f"teacher {teacher.accuracy:.2f} % − max_drop {config.max_drop:g}",
    )


def export_accuracy_rule(
    student: ExportRow, reference: ExportRow, config: GateConfig
) -> RuleResult:
    """The exported student against the PyTorch student, both scored by the export on the
    same evaluation set (report.json's accuracy may be on another subset)."""
    return judge(
        "export_accuracy",
        student.accuracy,
        _accuracy_bar(reference.accuracy - config.max_export_drop),
        f"{student.label} vs PyTorch {reference.accuracy:.2f} % − max_export_drop "
        f"{config.max_export_drop:g}",
    )


def export_agreement_rule(
    student: ExportRow, path: Path, config: GateConfig, flags: dict[str, float]
) -> RuleResult:
    """Top-1 agreement with the PyTorch fp32 student. fp16 and int8 legitimately move a few
    borderline decisions, so they are held to the bar the export applied to them unless
    --min-agreement is given. The gate's bars are its own (the export's fp32 tolerances are
    stricter), so a file the export's parity check failed can pass here: the detail says so,
    lest a gate job that sees only the reports ship it unawares."""
    if student.parity is None:
        raise UserError(f"{path}: the {student.label} student has no parity results")
    floor = (
        config.min_agreement
        if student.precision == "fp32" or "min_agreement" in flags
        else student.parity.min_agreement
    )
    if student.parity.max_abs_diff is None:
        # Logits of NaN "agree" on argmax's class 0: a file (or a PyTorch reference) that
        # outputs them would pass at 100 %.
        return RuleResult(
            "export_agreement",
            student.parity.top1_agreement,
            floor,
            "FAIL",
            f"{student.label} vs PyTorch fp32: logits NaN or infinite (max |Δ| not finite), "
            "so no top-1 can be compared",
        )
    return judge(
        "export_agreement",
        student.parity.top1_agreement,
        floor,
        f"{student.label} vs PyTorch fp32 top-1, max |Δ| {difference(student.parity)}"
        + (
            ""
            if floor == config.min_agreement
            else f"; the bar is the export's for {student.precision}"
        )
        + ("" if student.parity.passed else "; the export's own parity check failed this file"),
    )


def _speedup_teacher(export: ExportReport, path: Path, student: ExportRow) -> ExportRow | None:
    """The teacher at the student's precision, or at fp32: it is never converted to fp16."""
    return one_row(export, path, "teacher", student.backend, student.precision) or one_row(
        export, path, "teacher", student.backend, "fp32"
    )


def _speedup_batch(path: Path, student: ExportRow, teacher: ExportRow, batch: int | None) -> int:
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


def speedup_rule(
    export: ExportReport,
    path: Path,
    student: ExportRow,
    min_speedup: float | None,
    batch: int | None,
) -> RuleResult:
    """Judged when min_speedup is set. Unset, the speedup is still shown where both were
    timed, marked not judged, so `--speedup-batch` alone reads a figure off the report
    instead of being silently ignored."""
    teacher = _speedup_teacher(export, path, student)
    unjudged = min_speedup is None and batch is None
    if unjudged and (teacher is None or not set(student.latency) & set(teacher.latency)):
        return RuleResult("speedup", None, None, "SKIP", "min_speedup is not set", "×")
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
    teacher_ms, student_ms = teacher.latency[batch].p50_ms, student.latency[batch].p50_ms
    detail = (
        f"{student.backend} batch {batch}: teacher {teacher.precision} p50 {teacher_ms:.3g} ms"
        f" / student {student.precision} p50 {student_ms:.3g} ms"
        + _noise_note(teacher.latency[batch], student.latency[batch])
        + _teacher_parity_note(teacher)
    )
    if min_speedup is None:
        return RuleResult(
            "speedup",
            teacher_ms / student_ms,
            None,
            "SKIP",
            f"min_speedup is not set, so not judged; {detail}",
            "×",
        )
    return judge("speedup", teacher_ms / student_ms, min_speedup, detail, "×")


def _teacher_parity_note(teacher: ExportRow) -> str:
    """Say so when the timed teacher file failed parity with PyTorch (the export warned, and
    exited 0: only the student ships). The speedup is then against a graph that computes
    something else, which may run faster or slower than the teacher does."""
    if teacher.parity is None or teacher.parity.passed:
        return ""
    return (
        f"; the teacher's {teacher.label} file failed parity with PyTorch (max |Δ| "
        f"{difference(teacher.parity)}, top-1 agreement {teacher.parity.top1_agreement:.2f} %), "
        "so its timing may not be the teacher's: see the export report's warning"
    )


def _noise_note(teacher: Latency, student: Latency) -> str:
    """Say so when a timing behind the speedup was noisy (the export warned too): a verdict
    near the bar may flip on a re-run, and CI logs should show why."""
    noisy = [
        f"{model} IQR / p50 {spread_text(timing.spread)}"
        for model, timing in (("teacher", teacher), ("student", student))
        if timing.spread is not None and is_noisy(timing.spread)
    ]
    if not noisy:
        return ""
    return (
        f"; noisy timing ({', '.join(noisy)} > {NOISY_SPREAD:g}): other load on the machine, "
        "so re-export on a quiet one before trusting a verdict near the bar"
    )
