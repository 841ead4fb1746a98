"""`export_run`: a run directory in, ONNX (+ TensorRT) files and an export report out.

Top to bottom: read the run (bad input fails here, before any work) → export every model to
ONNX (a model that cannot export fails before any evaluation time is spent) → per model:
the PyTorch reference logits, computed once, and PyTorch latency; ONNX Runtime parity,
accuracy and latency → TensorRT likewise, when asked and possible → speedups and the
precision comparison (fp16/INT8 against fp32 on the same backend) → export_report.json|md|html.

`--int8` quantises every exported fp32 model (student, and teacher when exported) with
calibration images from the training split (export/quantize.py); the INT8 file is then
validated exactly like the fp32 one, on every backend that runs.

`--trt` where TensorRT cannot run (not installed, no GPU) is refused before any work: an
export without it would replace the previous one with less than was asked for. An engine that
fails to build does not discard what did run: the report is written, and the reasons come
back in `ExportReport.problems` for the caller (the CLI exits 2 with them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import compressor
from compressor.engine.device import restored_torch_settings
from compressor.errors import UserError, warn_caller
from compressor.interrupt import import_whole
from compressor.provenance import cpu_model, export_section_hash
from compressor.recipe import ExportConfig
from compressor.recipe.percent import fraction_for_percent
from compressor.rundir import RunDir
from export.bench import Artifact, Bench
from export.given_student import given_student, refuse_replacing
from export.onnx_export import export_onnx
from export.onnxruntime_runner import OnnxRuntimeRunner
from export.publish import OUR_FILES, publish
from export.quantize import Int8Settings, calibration_batch, quantize_int8, resolve_settings
from export.report import write_reports
from export.results import (
    ExportReport,
    Result,
    parity_failures,
    precision_comparison,
    result_warnings,
    slower_precision_warnings,
    speedups,
)
from export.run_inputs import (
    ModelFile,
    RunInputs,
    check_run_unchanged,
    model_file,
    read_run,
    read_splits,
    read_teacher,
)
from export.settings import ExportOptions, export_settings
from export.staging import staging_folder
from export.tensorrt_runner import TensorRTRunner, build_engine, tensorrt_missing
from export.torch_runner import TorchRunner
from export.validate import EvalSet, accuracy, predict


def export_run(
    run_dir: Path | str,
    options: ExportOptions | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export, validate and time the run's student (and teacher); write the export report.
    `log` hears each step, `warn` each warning on the inputs (the report keeps its own);
    without `warn`, `log` hears them as "warning: ..." lines, and without either they are
    raised as CompressorWarning. The export's outcome is `report.verdict()`: this returns
    whether or not a student file passed parity (the CLI exits 1 when one did not).

    The caller's torch settings and random stream are as they were after it, as after a
    run: building the models draws from it, and a notebook's results depended on whether
    it had exported first."""
    with restored_torch_settings():
        return _export_run(run_dir, options, log, warn)


def _export_run(
    run_dir: Path | str,
    options: ExportOptions | None,
    log: Callable[[str], None] | None,
    warn: Callable[[str], None] | None,
) -> ExportReport:
    options = options or ExportOptions()
    say = log or (lambda _line: None)
    if warn is None:
        warn = warn_caller if log is None else (lambda text: say(f"warning: {text}"))

    # torch imports these on first use, for seconds; a stop then must not leave them half-loaded.
    import_whole("torch._dynamo", "torch.onnx._internal.exporter._core")

    # 1. Inputs. Everything that can be wrong with them fails here, before any file is written.
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if options.tensorrt:
        _refuse_missing_tensorrt(gpu)
    inputs = read_run(run_dir)
    settings = export_settings(inputs.recipe.export, options)
    _warn_of_fractions(settings, options, inputs.run.recipe, warn)
    with_teacher = options.teacher if options.teacher is not None else bool(inputs.recipe.teacher)
    models: dict[str, nn.Module] = {"student": inputs.student}
    sources = {"student": inputs.student_file}
    if with_teacher:
        models["teacher"] = read_teacher(inputs)
        checkpoint = _teacher_checkpoint(inputs)
        if checkpoint is not None:
            sources["teacher"] = model_file(checkpoint)
    train_set, test_set = read_splits(inputs, with_train=options.int8)
    subset = inputs.recipe.data.max_train_samples
    int8 = None if train_set is None else _int8_job(settings, train_set, options.tensorrt, subset)
    bench = Bench(test_set, settings, inputs.run.root, torch.get_num_threads())
    given = given_student(options.student_onnx, inputs, bench, options)
    refuse_replacing(given, inputs.run.export_dir, models, options)
    report = ExportReport(
        run=inputs.run.root,
        recipe_sha256=inputs.recipe_sha256,
        export_section_sha256=export_section_hash(inputs.recipe),
        student_sha256=inputs.student_file.sha256,
        dataset=bench.eval_set.name,
        eval_samples=len(bench.eval_set),
        settings=settings,
        host={
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
            "threads": bench.threads,
        },
        int8=None if int8 is None else int8.settings,
        student_onnx=None
        if given is None
        else {"file": bench.display(given.path), "precision": given.precision},
    )

    # 2–5 in a staging folder inside export/: the previous export stays whole until this one
    # has finished, and one that fails or is stopped leaves it as it was.
    published = False
    try:
        with staging_folder(inputs.run.export_dir, say) as staging:
            check_run_unchanged(inputs)
            # 2. ONNX files for every model (and their INT8 forms).
            artifacts = {
                name: _export_model(
                    name, model, inputs, settings, options.fp16, given, staging, say
                )
                for name, model in models.items()
            }
            if int8 is not None:
                for name, files in artifacts.items():
                    metadata = _metadata(inputs, name, _arch(name, inputs), "int8")
                    files.append(int8.quantize(name, files, staging, say, warn, metadata))

            with _fits_in_memory(settings.batch_sizes):
                # 3. Per model: the PyTorch reference (computed once), then ONNX Runtime.
                references: dict[str, np.ndarray] = {}
                for name, model in models.items():
                    row, references[name] = _pytorch_reference(
                        name, model, sources.get(name), bench, say
                    )
                    report.results.append(row)
                    if options.onnxruntime:
                        report.results.extend(
                            _onnxruntime_rows(artifacts[name], references[name], bench, say)
                        )

                # 4. TensorRT, from the same ONNX files.
                if options.tensorrt:
                    assert gpu is not None  # _refuse_missing_tensorrt refused without one
                    _tensorrt_rows(artifacts, references, bench, gpu, report, say)

            # 5. Speedups, the precision comparison, warnings; the files, then the report.
            report.speedup = speedups(report.results)
            report.precisions = precision_comparison(report.results)
            report.failures = parity_failures(report.results)
            report.warnings = result_warnings(report.results)
            report.warnings += slower_precision_warnings(report.precisions)
            if not options.onnxruntime and not options.tensorrt:
                report.warnings.append(_unchecked_warning(artifacts, bench))
            report.onnx_files = sorted(p.name for p in staging.iterdir() if p.name in OUR_FILES)
            staged = write_reports(report.to_json(), staging)
            export_dir = inputs.run.export_dir
            report.files = {kind: export_dir / path.name for kind, path in staged.items()}
            removed = publish(staging, export_dir, keep=given.path if given else None)
            published = True
    except KeyboardInterrupt:
        if published:  # the rest was removing the staging folder and releasing the lock
            raise InterruptedOncePublished(report) from None
        raise
    if removed:
        say(
            f"removed the previous export's {', '.join(removed)}, which this one did not make "
            "(export with the same flags, such as --int8 or --fp16, to keep them)"
        )
    return report


class InterruptedOncePublished(KeyboardInterrupt):
    """Ctrl-C or SIGTERM that came after the new export was put in place: the export is
    complete, and the caller says so instead of "the previous export is as it was"."""

    def __init__(self, report: ExportReport) -> None:
        super().__init__()
        self.report = report


def _refuse_missing_tensorrt(gpu: str | None) -> None:
    """--trt where TensorRT cannot run: refused before any work, as an export without it would
    replace the previous export with one that lacks the TensorRT results asked for."""
    missing = tensorrt_missing(gpu is not None)
    if missing is not None:
        raise UserError(
            f"--trt: {missing}; nothing was exported: drop --trt to export and validate "
            "with ONNX Runtime alone"
        )


def _pytorch_reference(
    name: str,
    model: nn.Module,
    source: ModelFile | None,
    bench: Bench,
    say: Callable[[str], None],
) -> tuple[Result, np.ndarray]:
    """The model's PyTorch row and its logits on the test split: the reference every exported
    file of it is compared with. Only after the export: running it changes the weights'
    layout."""
    say(f"{name}: PyTorch reference on {len(bench.eval_set):,} test images")
    runner = TorchRunner(model)
    logits = predict(runner.infer, bench.eval_set, bench.eval_batch)
    broken = int((~np.isfinite(logits)).any(axis=1).sum())
    if broken:  # every file would "fail parity", blamed on the export
        file = f" ({bench.display(source.path)})" if source is not None else ""
        raise UserError(
            f"{name}: the PyTorch model{file} gives NaN or infinite logits on {broken} of the "
            f"{len(logits):,} test images: the trained model is broken, not its export; "
            "train it again (a lower train.optimizer.lr)"
        )
    row = Result(
        model=name,
        backend=runner.backend,
        precision="fp32",
        device=runner.device,
        file=bench.display(source.path if source is not None else None),
        size_bytes=source.size_bytes if source is not None else None,
        sha256=source.sha256 if source is not None else None,
        accuracy=accuracy(logits, bench.eval_set.labels),
        parity=None,
        latency=bench.latencies(runner.infer),
    )
    return row, logits


def _onnxruntime_rows(
    files: Sequence[Artifact], reference: np.ndarray, bench: Bench, say: Callable[[str], None]
) -> list[Result]:
    """Every ONNX file of one model in ONNX Runtime: parity with its reference, accuracy,
    latency, on the bench's CPU threads."""
    rows = []
    for artifact in files:
        say(f"{artifact.model}: ONNX Runtime on {artifact.path.name}")
        rows.append(
            bench.measure(
                artifact,
                OnnxRuntimeRunner(artifact.path, threads=bench.threads),
                artifact.path,
                reference,
            )
        )
    return rows


def _tensorrt_rows(
    artifacts: dict[str, list[Artifact]],
    references: dict[str, np.ndarray],
    bench: Bench,
    gpu: str,
    report: ExportReport,
    say: Callable[[str], None],
) -> None:
    """Every ONNX file in TensorRT, rows added to `report` as they come: an engine that fails
    to build keeps the rows before it, and its reason goes to the report's problems."""
    try:
        for files in artifacts.values():
            for artifact in files:
                report.results.append(
                    _tensorrt(artifact, references[artifact.model], bench, gpu, say)
                )
    except UserError as error:
        report.problems.extend(error.lines)


def _tensorrt(
    artifact: Artifact, reference: np.ndarray, bench: Bench, gpu: str, say: Callable[[str], None]
) -> Result:
    """Build (or reuse) the engine for one ONNX file, then measure it like any backend."""
    engine, reused = build_engine(
        artifact.path,
        RunDir(bench.root).export_dir / "trt",
        gpu=gpu,
        precision=artifact.precision,
        image_shape=bench.eval_set.images.shape[1:],
        opt_batch=max(bench.settings.batch_sizes),
        max_batch=bench.eval_batch,
    )
    say(f"{artifact.model}: TensorRT engine {engine.name} ({'reused' if reused else 'built'})")
    with TensorRTRunner(engine) as runner:
        return bench.measure(artifact, runner, engine, reference)


@contextmanager
def _fits_in_memory(batch_sizes: Sequence[int]) -> Iterator[None]:
    """A latency batch too big for this machine is a bad flag, not a crash: numpy raises
    MemoryError, or ValueError for a size past its index range; torch's allocators a
    RuntimeError (OutOfMemoryError on CUDA)."""
    try:
        yield
    except (MemoryError, RuntimeError, ValueError) as error:
        said = str(error)
        too_big = "allocate" in said or "Maximum allowed size exceeded" in said
        if not isinstance(error, MemoryError) and not too_big:
            raise
        largest = max(batch_sizes)
        raise UserError(
            f"--batch-sizes {largest}: out of memory evaluating and timing batches of "
            f"{largest:,} images; give smaller batch sizes (or export.batch_sizes in the recipe)"
        ) from None


def _unchecked_warning(artifacts: dict[str, list[Artifact]], bench: Bench) -> str:
    """--no-onnx without --trt: which files no backend ran (the user's own named as given)."""
    files = ", ".join(
        str(bench.display(artifact.path)) for found in artifacts.values() for artifact in found
    )
    return (
        f"--no-onnx: no backend validated or timed {files}; drop --no-onnx, or add --trt, "
        "to check them"
    )


@dataclass(frozen=True)
class _Int8Job:
    """The resolved INT8 settings and the calibration images, drawn once for every model."""

    settings: Int8Settings
    images: np.ndarray

    def quantize(
        self,
        name: str,
        files: Sequence[Artifact],
        out: Path,
        say: Callable[[str], None],
        warn: Callable[[str], None],
        metadata: Mapping[str, Any],
    ) -> Artifact:
        source = next(artifact.path for artifact in files if artifact.precision == "fp32")
        target = out / f"{name}.int8.onnx"
        say(
            f"{name}: quantising {source.name} to INT8 ({len(self.images)} calibration "
            f"images, {self.settings.calibration_method}) → export/{target.name}"
        )
        quantize_int8(
            source, target, self.images, self.settings, name=name, metadata=metadata, warn=warn
        )
        return Artifact(name, "int8", target)


def _warn_of_fractions(
    settings: ExportConfig, options: ExportOptions, recipe: Path, warn: Callable[[str], None]
) -> None:
    """The run's recipe.yaml may be edited after training, past the preflight that warns of
    a percentage written as a fraction (0.999 for 99.9 %): warn here for the bars this export
    applies from it (a flag was warned of where it was read)."""
    used = ["min_agreement"] if options.min_agreement is None else []
    used += ["fp16_min_agreement"] * options.fp16 + ["int8_min_agreement"] * options.int8
    for field in used:
        for warning in fraction_for_percent(f"export.{field}", getattr(settings, field)):
            warn(f"{recipe}: {warning}")


def _int8_job(
    settings: ExportConfig, train: EvalSet, tensorrt: bool, max_train_samples: int | None
) -> _Int8Job:
    """Check the INT8 settings and draw the calibration images, before any export work."""
    resolved = resolve_settings(settings.int8, tensorrt=tensorrt)
    config = settings.int8
    images = calibration_batch(train, config.calibration_images, config.seed, max_train_samples)
    return _Int8Job(resolved, images)


def _export_model(
    name: str,
    model: nn.Module,
    inputs: RunInputs,
    settings: ExportConfig,
    fp16: bool,
    given: Artifact | None,
    out: Path,
    say: Callable[[str], None],
) -> list[Artifact]:
    plans = [("fp32", out / f"{name}.onnx")]
    if name == "student" and fp16:
        plans.append(("fp16", out / f"{name}.fp16.onnx"))
    if name == "student" and given is not None:
        plans = [plan for plan in plans if plan[0] != "fp32"]
    artifacts = [given] if name == "student" and given is not None else []
    arch = _arch(name, inputs)
    for precision, path in plans:
        say(f"{name}: exporting {arch} to export/{path.name}")
        export_onnx(
            model,
            path,
            image_shape=inputs.image_shape,
            opset=settings.opset,
            metadata=_metadata(inputs, name, arch, precision),
            half=precision == "fp16",
            name=name,
        )
        artifacts.append(Artifact(name, precision, path))
    return artifacts


def _metadata(inputs: RunInputs, name: str, arch: str, precision: str) -> dict[str, Any]:
    """What a deployment needs to feed the model and read its output, without this package."""
    return {
        "model": name,
        "arch": arch,
        "precision": precision,
        "classes": inputs.classes,
        "input_shape": list(inputs.image_shape),
        "input_layout": "NCHW",
        "preprocessing": "x = (pixels / 255 - mean) / std, per channel",
        "mean": list(inputs.record["mean"]),
        "std": list(inputs.record["std"]),
        "recipe_sha256": inputs.recipe_sha256,
        "run": inputs.run.root.resolve().name,  # "." names no run
        "producer": f"compressor {compressor.__version__}",
    }


def _arch(name: str, inputs: RunInputs) -> str:
    if name == "student":
        return str(inputs.record["arch"])
    teacher = inputs.recipe.teacher
    assert teacher is not None
    if teacher.arch or teacher.entrypoint:
        return str(teacher.arch or teacher.entrypoint)
    return Path(str(teacher.checkpoint)).name


def _teacher_checkpoint(inputs: RunInputs) -> Path | None:
    teacher = inputs.recipe.teacher
    return teacher.checkpoint if teacher is not None and teacher.checkpoint else None
