"""`compress export --student-onnx FILE`: a student ONNX file made elsewhere (optimised,
quantised) validated in place of the one the export writes. Everything that could make it
unusable, or let the export overwrite it, is refused before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from torch import nn

from compressor.errors import UserError
from export.bench import EVAL_BATCH, Artifact, Bench
from export.onnx_export import check_classifier_io, fixed_batch, load_onnx
from export.onnx_inspect import onnx_precision
from export.onnxruntime_runner import OnnxRuntimeRunner, ort_reason
from export.quantize import CALIBRATION_BATCH
from export.run_inputs import RunInputs
from export.settings import ExportOptions


def given_student(
    path: Path | None, inputs: RunInputs, bench: Bench, options: ExportOptions
) -> Artifact | None:
    """A student ONNX file made elsewhere (optimised, quantised): checked before any work."""
    if path is None:
        return None
    proto = load_onnx(path)
    check_classifier_io(proto, path, inputs.image_shape, inputs.record["num_classes"])
    fixed = fixed_batch(proto)
    if fixed is not None:
        _check_fixed_batch(path, fixed, bench, options)
    if options.onnxruntime:
        _check_it_runs(path, inputs, bench)
    precision = onnx_precision(proto)
    if options.int8 and precision != "fp32":
        raise UserError(
            f"{path}: is already {precision}; --int8 quantises an fp32 model: give the fp32 "
            "file to --student-onnx, or drop --int8"
        )
    if options.fp16 and precision == "fp16":
        raise UserError(
            f"{path}: is already fp16, and --fp16 would add a second fp16 student of its own; "
            "drop --fp16"
        )
    return Artifact("student", precision, path)


def refuse_replacing(
    given: Artifact | None, export_dir: Path, models: dict[str, nn.Module], options: ExportOptions
) -> None:
    """A --student-onnx file kept in export/ under a name this export writes (student.fp16.onnx
    with --fp16) would be replaced by the export's own file when it finishes: refuse first."""
    if given is None:
        return
    target = given.path.resolve()
    writes = {f"{name}.onnx" for name in models if name != "student"}
    if options.fp16:
        writes.add("student.fp16.onnx")
    if options.int8:
        writes |= {f"{name}.int8.onnx" for name in models}
    if target.parent == export_dir.resolve() and target.name in writes:
        raise UserError(
            f"--student-onnx {given.path}: this export writes its own {target.name} there and "
            "would replace your file; move or copy it out of export/ and give that path"
        )


def _check_it_runs(path: Path, inputs: RunInputs, bench: Bench) -> None:
    """Run the file once at every batch size the export will, on blank images: a graph whose
    input says its batch is dynamic can still fix it inside (a Reshape to [1, -1]), and open
    sizes say nothing of what the file takes. Found here, it is one line before any work,
    not a crash halfway through the evaluation."""
    runner = OnnxRuntimeRunner(path)
    expected = inputs.record["num_classes"]
    shape = [*inputs.image_shape]
    for index, batch in enumerate(bench.batch_sizes_run):
        try:
            logits = runner.infer(np.zeros((batch, *shape), np.float32))
        except Exception as error:  # onnxruntime's own untyped Fail, InvalidArgument, ...
            fix = (
                "export it with a batch axis that is dynamic all through the graph (no "
                f"reshape to a fixed batch): it ran on {bench.batch_sizes_run[index - 1]}"
                if index
                else f"it must take the run's images, [batch, {', '.join(map(str, shape))}]"
            )
            raise UserError(
                f"{path}: fails in ONNX Runtime {ort.__version__} on a batch of {batch} "
                f"images ({ort_reason(error)}); {fix}"
            ) from None
        if logits.shape != (batch, expected):
            raise UserError(
                f"{path}: returns logits of shape {list(logits.shape)} for {batch} images of "
                f"{shape}; expected [{batch}, {expected}], one per class"
            )


def _check_fixed_batch(path: Path, fixed: int, bench: Bench, options: ExportOptions) -> None:
    """A file whose batch dimension is fixed runs only where every batch it meets is that one:
    the evaluation's (at least EVAL_BATCH, and it must divide the test set), the latency
    batches, and with --int8 the calibration's."""
    images = len(bench.eval_set)
    if not bench.runs_only_at(fixed):
        if fixed >= EVAL_BATCH and images % fixed == 0:
            instead = f"or time it with --batch-sizes {fixed}"
        else:
            instead = (
                f"a fixed batch can run here only if it is at least {EVAL_BATCH} and divides "
                f"the {images:,} test images"
            )
        raise UserError(
            f"{path}: the input's batch dimension is fixed at {fixed}, but it would be run at "
            f"batch sizes {', '.join(map(str, bench.batch_sizes_run))}; export it with a "
            f"dynamic batch axis, {instead}"
        )
    calibration = bench.settings.int8.calibration_images
    if options.int8 and (fixed != CALIBRATION_BATCH or calibration % CALIBRATION_BATCH):
        raise UserError(
            f"{path}: the input's batch dimension is fixed at {fixed}, but --int8 calibrates "
            f"in batches of {CALIBRATION_BATCH} ({calibration:,} images); export it with a "
            "dynamic batch axis, or drop --int8"
        )
