"""The export settings a run is exported with: its recipe's `export:` section, with what the
caller changed (flags of `compress export`, or `ExportOptions` in code) validated by the
recipe's own rules, so a bad flag is named as the flag that was typed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from compressor.errors import UserError
from compressor.recipe import ExportConfig, format_validation_error
from export.validate import Tolerance


@dataclass(frozen=True)
class ExportOptions:
    """What a caller can change; None takes the value from the recipe's `export:` section."""

    onnxruntime: bool = True  # validate and time the ONNX files with ONNX Runtime
    tensorrt: bool = False
    fp16: bool = False  # also export student.fp16.onnx (float16 weights and inputs)
    int8: bool = False  # also quantise every exported model to <name>.int8.onnx (static Q/DQ)
    calibration_images: int | None = None  # INT8 calibration set size
    teacher: bool | None = None  # None: when the run has a teacher
    student_onnx: Path | None = None  # validate this file instead of exporting the student
    batch_sizes: Sequence[int] | None = None
    opset: int | None = None
    warmup_runs: int | None = None
    timed_runs: int | None = None
    max_abs_diff: float | None = None  # fp32 parity
    min_agreement: float | None = None  # fp32 parity


def export_settings(recipe_export: ExportConfig, options: ExportOptions) -> ExportConfig:
    """The recipe's export section with the caller's overrides, validated by the same rules."""
    merged = recipe_export.model_dump()
    if options.calibration_images is not None:
        merged["int8"]["calibration_images"] = options.calibration_images
    overrides = {
        "batch_sizes": list(options.batch_sizes) if options.batch_sizes is not None else None,
        "opset": options.opset,
        "warmup_runs": options.warmup_runs,
        "timed_runs": options.timed_runs,
        "max_abs_diff": options.max_abs_diff,
        "min_agreement": options.min_agreement,
    }
    merged |= {k: v for k, v in overrides.items() if v is not None}
    # Timed and reported in increasing order: the last column is the largest batch, the
    # throughput batch the reports and the gate's speedup name. Sorted here, not in the
    # recipe, whose hashes would change with the order.
    merged["batch_sizes"] = sorted(merged["batch_sizes"])
    try:
        return ExportConfig.model_validate(merged)
    except ValidationError as error:
        given = {field for field, value in overrides.items() if value is not None}
        if options.calibration_images is not None:
            given.add("int8.calibration_images")
        lines = format_validation_error("export", error)
        raise UserError(*(_name_the_flag(line, given) for line in lines)) from None


# The command-line flag behind each overridable export setting: an error names what was typed.
_FLAGS = {
    "batch_sizes": "--batch-sizes",
    "opset": "--opset",
    "warmup_runs": "--warmup",
    "timed_runs": "--runs",
    "max_abs_diff": "--max-abs-diff",
    "min_agreement": "--min-agreement",
    "int8.calibration_images": "--calibration-images",
}


def _name_the_flag(line: str, given: set[str]) -> str:
    """'export: timed_runs: …' → '--runs: …' when the caller set it, else the recipe's key."""
    for setting in sorted(given, key=len, reverse=True):
        prefix = f"export: {setting}"
        if line.startswith((f"{prefix}:", f"{prefix}.", f"{prefix}[")) and setting in _FLAGS:
            return _FLAGS[setting] + line[len(prefix) :]
    return "recipe " + line


def tolerance_for(settings: ExportConfig, precision: str) -> Tolerance:
    """fp32 is judged elementwise and by agreement; fp16 and int8 by agreement only."""
    if precision == "fp32":
        return Tolerance(settings.max_abs_diff, settings.min_agreement)
    if precision == "fp16":
        return Tolerance(None, settings.fp16_min_agreement)
    return Tolerance(None, settings.int8_min_agreement)
