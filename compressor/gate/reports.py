"""The run's reports as the gate reads them: report.json and export/export_report.json,
checked field by field, so a broken pipeline surfaces as one precise line, never as a verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from compressor.errors import UserError
from compressor.io import file_in_the_way, loads_json, record_unreadable
from compressor.provenance import SCHEMA_VERSION
from compressor.recipe import format_validation_error


# The reports as the gate reads them: only the fields it uses (pydantic ignores the rest), so the
# exporter can add fields without breaking the gate while a missing or mistyped field still
# surfaces as one precise line (file, field path, problem).
class Report(BaseModel):
    schema_version: int
    recipe_sha256: str


# A percentage in a report is a number from 0 to 100: NaN, infinities and anything else mean
# a broken pipeline, never a pass or a quality fail.
Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class Score(BaseModel):
    accuracy: Percent


class RunResults(BaseModel):
    student: Score
    teacher: Score | None
    test_samples: int | None = None  # how many images the accuracies are of


class RunReport(Report):
    results: RunResults


class Parity(BaseModel):
    max_abs_diff: float | None  # null when the exported model's outputs are not finite
    top1_agreement: Percent
    min_agreement: Percent
    passed: bool  # the export's verdict, by its tolerance for the file's precision


def difference(parity: Parity) -> str:
    return "not finite" if parity.max_abs_diff is None else f"{parity.max_abs_diff:.2g}"


class Latency(BaseModel):
    # Finite: an infinite p50 gave a speedup of "nan×", or passed a teacher at inf ms.
    p50_ms: float = Field(gt=0.0, allow_inf_nan=False)
    # None: from before it was kept; such a timing is not judged noisy.
    iqr_ms: float | None = Field(None, ge=0.0, allow_inf_nan=False)

    @property
    def spread(self) -> float | None:
        return None if self.iqr_ms is None else self.iqr_ms / self.p50_ms


class ExportRow(BaseModel):
    model: Literal["student", "teacher"]
    backend: str
    precision: str
    device: str
    accuracy: Percent
    parity: Parity | None
    latency: dict[int, Latency] = Field(default_factory=dict)
    file: str | None = None  # relative to the run directory, or absolute
    sha256: str | None = None  # None: a report from before it was recorded

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


class GivenStudent(BaseModel):
    """The file `compress export --student-onnx` measured as the student."""

    file: str  # relative to the run directory, or absolute
    precision: str


class Int8Record(BaseModel):
    """How the INT8 files were calibrated: a re-export must calibrate them alike."""

    calibration_images: int


class ExportReport(Report):
    results: list[ExportRow]
    int8: Int8Record | None = None  # None without --int8
    student_onnx: GivenStudent | None = None  # absent from reports written before it was kept
    eval_samples: int | None = None  # how many test images its accuracies are of
    student_sha256: str | None = None  # absent from reports written before it was recorded
    export_section_sha256: str | None = None  # likewise


ReportT = TypeVar("ReportT", bound=Report)


def read_report(path: Path, model: type[ReportT], what: str, remedy: str) -> ReportT:
    """Read and check one JSON record of the run; `what` names it when a folder stands in its
    place, `remedy` is what to run to (re)write it."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not {what}; remove it, then {remedy}")
    in_the_way = file_in_the_way(path)
    if in_the_way is not None:  # `export` a file: the remedy alone would be refused by it
        raise UserError(f"{in_the_way}: a file, not a folder; move it away, then {remedy}")
    if not path.exists():
        raise UserError(f"{path}: not found; {remedy}")
    unreadable = record_unreadable(path)
    if unreadable is not None:
        raise UserError(f"{path}: {unreadable}; {remedy}")
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{re.sub(r'( starting)? at$', '', error.msg)}); "
            f"{remedy}"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; {remedy}") from None
    except ValueError as error:  # nested too deeply, a number too long to convert
        raise UserError(f"{path}: not JSON that can be read ({error}); {remedy}") from None
    try:
        report = model.model_validate(data)
    except ValidationError as error:
        *lines, last = format_validation_error(str(path), error)
        raise UserError(*lines, f"{last}; {remedy}") from None
    if report.schema_version != SCHEMA_VERSION:
        raise UserError(
            f"{path}: schema_version {report.schema_version}, but this compressor reads "
            f"{SCHEMA_VERSION}; gate it with the compressor version that wrote it"
        )
    return report


def one_row(
    export: ExportReport, path: Path, model: str, backend: str, precision: str
) -> ExportRow | None:
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
