"""What an export measured: one `Result` per model, backend and precision, gathered in the
`ExportReport`, and the tables derived from them (teacher/student speedups, reduced
precision against fp32, warnings)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compressor.provenance import SCHEMA_VERSION, now_iso, package_versions
from compressor.recipe import ExportConfig
from export.latency import NOISY_SPREAD, Latency, spread_text
from export.quantize import Int8Settings
from export.validate import Parity


@dataclass(frozen=True)
class Result:
    """One model on one backend at one precision: a row of the report."""

    model: str
    backend: str
    precision: str
    device: str
    file: str | None
    size_bytes: int | None
    sha256: str | None  # the gate checks a deployed file against it, when the file is there
    accuracy: float
    parity: Parity | None
    latency: dict[int, Latency]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "accuracy": self.accuracy,
            "parity": None if self.parity is None else self.parity.to_json(),
            "latency": {str(batch): value.to_json() for batch, value in self.latency.items()},
        }


@dataclass
class ExportReport:
    run: Path
    recipe_sha256: str
    export_section_sha256: str  # recipe.yaml's export: section as read (provenance.py)
    student_sha256: str  # the student.pt exported: the gate refuses a report of another one
    dataset: str
    eval_samples: int
    settings: ExportConfig
    host: dict[str, Any]  # cpu (model name), cpu_count, gpu, threads
    int8: Int8Settings | None = None  # how the INT8 files were made; None without --int8
    results: list[Result] = field(default_factory=list)
    speedup: dict[str, dict[int, float]] = field(default_factory=dict)
    precisions: list[dict[str, Any]] = field(default_factory=list)  # vs fp32, same backend
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # student files that failed parity
    problems: list[str] = field(default_factory=list)  # requested work that could not run
    files: dict[str, Path] = field(default_factory=dict)  # "json" | "md" | "html" → path
    # The model files this export wrote into export/ (not a --student-onnx file): the next
    # export removes those it does not write again, and only those.
    onnx_files: list[str] = field(default_factory=list)
    # The --student-onnx file ({"file", "precision"}; file as the rows name files), or None:
    # the gate's re-export hints must give it again, or they would measure student.pt instead.
    student_onnx: dict[str, str | None] | None = None

    def verdict(self) -> str:
        """What the CLI's exit code says, for a reader of the report alone: `incomplete`
        (exit 2: requested work could not run), `failed` (exit 1: a student file failed
        parity), `unvalidated` (--no-onnx: no backend ran the files) or `passed`."""
        if self.problems:
            return "incomplete"
        if self.failures:
            return "failed"
        if all(result.parity is None for result in self.results):
            return "unvalidated"
        return "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run.resolve().name,  # "." names no run
            "recipe_sha256": self.recipe_sha256,
            "export_section_sha256": self.export_section_sha256,
            "student_sha256": self.student_sha256,
            "dataset": self.dataset,
            "eval_samples": self.eval_samples,
            "created": now_iso(),
            "versions": package_versions(),
            "host": self.host,
            "settings": self.settings.model_dump(mode="json"),
            "int8": None if self.int8 is None else asdict(self.int8),
            "results": [result.to_json() for result in self.results],
            "speedup": {
                backend: {str(batch): value for batch, value in by_batch.items()}
                for backend, by_batch in self.speedup.items()
            },
            "precision_comparison": self.precisions,
            "verdict": self.verdict(),
            "warnings": self.warnings,
            "failures": self.failures,
            "problems": self.problems,
            "onnx_files": self.onnx_files,
            "student_onnx": self.student_onnx,
        }


def speedups(results: Sequence[Result]) -> dict[str, dict[int, float]]:
    """Teacher p50 / student p50 per backend and batch, fp32 against fp32."""
    p50 = {
        (r.model, r.backend): {batch: lat.p50_ms for batch, lat in r.latency.items()}
        for r in results
        if r.precision == "fp32"
    }
    table: dict[str, dict[int, float]] = {}
    for (model, backend), student in p50.items():
        teacher = p50.get(("teacher", backend))
        if model == "student" and teacher is not None:
            table[backend] = {b: teacher[b] / student[b] for b in student if b in teacher}
    return table


NOISY_MARK = " (noisy timing)"  # after a speedup that rests on a noisy timing


def noisy_speedups(results: Sequence[Result]) -> dict[str, set[int]]:
    """Per backend, the batch sizes whose speedup rests on a noisy timing (teacher's or
    student's, fp32): a figure to mark where it is printed, as the warnings are far below."""
    noisy: dict[str, set[int]] = {}
    for r in results:
        if r.precision == "fp32" and r.model in ("teacher", "student"):
            batches = {batch for batch, latency in r.latency.items() if latency.noisy}
            noisy.setdefault(r.backend, set()).update(batches)
    return noisy


def precision_comparison(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Each reduced-precision file against the fp32 file of the same model on the same backend:
    what it cost in accuracy and agreement, and what it bought in latency and size."""
    fp32 = {(r.model, r.backend): r for r in results if r.precision == "fp32"}
    teachers = {(r.backend, r.precision): r for r in results if r.model == "teacher"}
    rows = []
    for r in results:
        base = fp32.get((r.model, r.backend))
        if r.precision == "fp32" or base is None:
            continue
        # The student's speedup over the teacher as the gate judges it at this precision:
        # the teacher's file of the same precision, else its fp32 (never made fp16).
        teacher = None
        if r.model == "student":
            teacher = teachers.get((r.backend, r.precision)) or teachers.get((r.backend, "fp32"))
        rows.append(
            {
                "model": r.model,
                "backend": r.backend,
                "precision": r.precision,
                "accuracy": r.accuracy,
                "fp32_accuracy": base.accuracy,
                "accuracy_drop": base.accuracy - r.accuracy,
                "top1_agreement": None if r.parity is None else r.parity.top1_agreement,
                "size_ratio": (
                    base.size_bytes / r.size_bytes if base.size_bytes and r.size_bytes else None
                ),
                "speedup": {
                    str(batch): base.latency[batch].p50_ms / latency.p50_ms
                    for batch, latency in r.latency.items()
                    if batch in base.latency
                },
                # The batches whose speedup rests on a noisy timing, this file's or fp32's:
                # marked where printed, as the student-over-teacher speedups are.
                "noisy_speedups": [
                    str(batch)
                    for batch, latency in r.latency.items()
                    if batch in base.latency and (latency.noisy or base.latency[batch].noisy)
                ],
                "teacher_precision": None if teacher is None else teacher.precision,
                "teacher_speedup": {}
                if teacher is None
                else {
                    str(batch): teacher.latency[batch].p50_ms / latency.p50_ms
                    for batch, latency in r.latency.items()
                    if batch in teacher.latency
                },
                "noisy_teacher_speedups": []
                if teacher is None
                else [
                    str(batch)
                    for batch, latency in r.latency.items()
                    if batch in teacher.latency and (latency.noisy or teacher.latency[batch].noisy)
                ],
            }
        )
    return rows


# A difference below this share of the logits' size is float32 rounding, not a wrong graph.
_ROUNDING_SHARE = 1e-4


def _rounding_note(parity: Parity) -> str:
    """Large logits (an overconfident model's run to the thousands) round in float32 beyond
    an absolute bar that suits logits of ten or so; say so when agreement is met, and how to
    judge such a model."""
    scale, limit = parity.logit_scale, parity.tolerance_max_abs
    if scale is None or limit is None or parity.top1_agreement < parity.min_agreement:
        return ""
    if not limit < parity.max_abs_diff <= _ROUNDING_SHARE * scale:
        return ""
    return (
        f"; the logits reach {scale:.3g}, and a difference of {parity.max_abs_diff / scale:.1e} "
        "of that is float32 rounding: if agreement is what matters for this model, raise "
        "--max-abs-diff (export.max_abs_diff)"
    )


def _not_finite_reason(precision: str) -> str:
    """A NaN or infinite logit fails parity whatever the agreement: say so, not the figures."""
    reason = "some of its logits are NaN or infinite"
    if precision == "fp16":
        return (
            f"{reason}: float16 holds values up to 65,504 and an activation past that "
            "overflows; deploy the fp32 file"
        )
    return reason


def _parity_failed(result: Result) -> bool:
    return result.parity is not None and not result.parity.passed


def _parity_line(result: Result) -> str:
    """Why a row failed parity, by how much against which bar."""
    parity = result.parity
    assert parity is not None
    what = f"{result.model} {result.backend} {result.precision}"
    if not math.isfinite(parity.max_abs_diff):
        return f"parity failed for {what}: {_not_finite_reason(result.precision)}"
    limit = (
        f"max |diff| {parity.max_abs_diff:.2e} (limit {parity.tolerance_max_abs:g}), "
        if parity.tolerance_max_abs is not None
        else ""
    )
    return (
        f"parity failed for {what}: {limit}top-1 agreement "
        f"{parity.top1_agreement:.2f} % (minimum {parity.min_agreement:.2f} %)"
        + _rounding_note(parity)
        + (_agreement_note(result.precision) if parity.tolerance_max_abs is None else "")
    )


def _agreement_note(precision: str) -> str:
    """fp16 and INT8 are judged by agreement alone, and a model with many low-margin
    predictions (a student at 70 %) moves more of them than one at 99 % would, with its
    accuracy where it was: say where to look, and which bar to lower if that is the case."""
    return (
        f"; a model with many low-margin predictions agrees less at {precision} with its "
        "accuracy unchanged: compare the two accuracies in the reduced-precision table, and "
        f"lower export.{precision}_min_agreement if accuracy is what matters"
    )


def slower_precision_warnings(precisions: Sequence[dict[str, Any]]) -> list[str]:
    """A reduced-precision file slower than its fp32 file at every batch timed steadily: on a
    CPU without int8 dot-product instructions (VNNI) INT8 is, and fp16 on most CPUs is. The
    ratios sit in a table far from the verdict; deploying such a file would make things worse."""
    lines = []
    for row in precisions:
        if row["model"] != "student":  # a teacher's files time the baseline; none ships
            continue
        noisy = set(row["noisy_speedups"])
        steady = {batch: ratio for batch, ratio in row["speedup"].items() if batch not in noisy}
        if steady and all(ratio < 1 for ratio in steady.values()):
            figures = ", ".join(f"{ratio:.2f}× at batch {batch}" for batch, ratio in steady.items())
            lines.append(
                f"{row['model']} {row['precision']} is slower than fp32 in {row['backend']} on "
                f"this machine ({figures}): keep the fp32 file for it"
            )
    return lines


def failed_students(results: Sequence[Result]) -> list[str]:
    """ "student onnxruntime fp32" and the like: the student files that failed parity."""
    return [
        f"{r.model} {r.backend} {r.precision}"
        for r in results
        if r.model == "student" and _parity_failed(r)
    ]


def parity_failures(results: Sequence[Result]) -> list[str]:
    """The student files whose outputs left PyTorch's: what ships must match it, so each of
    these fails the export (exit 1) and is reported as a failure, not as a warning."""
    return [_parity_line(r) for r in results if r.model == "student" and _parity_failed(r)]


def result_warnings(results: Sequence[Result]) -> list[str]:
    """What to look at that does not fail the export: a teacher file that failed parity (it
    is exported for the speedup figures only) and timings too noisy to trust."""
    lines = [_parity_line(r) for r in results if r.model != "student" and _parity_failed(r)]
    # One line for all of them: one per model, backend and batch repeated the same advice six
    # times over in a quickstart on a busy machine.
    noisy = [
        f"{r.model} {r.backend} {r.precision} at batch {batch} ({spread_text(latency.spread)})"
        for r in results
        for batch, latency in r.latency.items()
        if latency.noisy
    ]
    if noisy:
        lines.append(
            f"noisy latency (interquartile range / median above {NOISY_SPREAD:g}) for "
            f"{', '.join(noisy)}: other load on the machine; close other programs and export "
            "again (more runs steady the median, not the machine)"
        )
    return lines
