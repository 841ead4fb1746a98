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

import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

import compressor
from compressor.errors import UserError
from compressor.io import file_sha256, lock_or_refuse
from compressor.provenance import SCHEMA_VERSION, now_iso, package_versions
from compressor.recipe import ExportConfig, format_validation_error
from compressor.rundir import RunDir
from export.latency import Latency, measure_latency
from export.onnx_export import (
    check_classifier_io,
    export_onnx,
    fixed_batch,
    load_onnx,
)
from export.onnx_inspect import onnx_precision
from export.onnxruntime_runner import OnnxRuntimeRunner
from export.publish import (
    LOCK_NAME,
    OUR_FILES,
    REPORT_NAME,
    STAGING_PREFIX,
    finish_interrupted,
    publish,
)
from export.quantize import Int8Settings, calibration_batch, quantize_int8, resolve_settings
from export.report import write_reports
from export.run_inputs import RunInputs, read_run, read_splits, read_teacher
from export.tensorrt_runner import TensorRTRunner, build_engine, tensorrt_missing
from export.torch_runner import TorchRunner
from export.validate import EvalSet, Infer, Parity, Tolerance, accuracy, parity, predict

# Evaluation runs in batches of at least this size (bigger when a latency batch is bigger):
# large enough to keep every backend busy, and the TensorRT profile's maximum batch.
EVAL_BATCH = 64


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
    student_sha256: str  # the student.pt exported: the gate refuses a report of another one
    dataset: str
    eval_samples: int
    settings: ExportConfig
    host: dict[str, str | None]
    int8: Int8Settings | None = None  # how the INT8 files were made; None without --int8
    results: list[Result] = field(default_factory=list)
    speedup: dict[str, dict[int, float]] = field(default_factory=dict)
    precisions: list[dict[str, Any]] = field(default_factory=list)  # vs fp32, same backend
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # requested work that could not run
    files: dict[str, Path] = field(default_factory=dict)  # "json" | "md" | "html" → path

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run.name,
            "recipe_sha256": self.recipe_sha256,
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
            "warnings": self.warnings,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class _Artifact:
    """An ONNX file to validate: which model, at which precision."""

    model: str
    precision: str
    path: Path


def export_run(
    run_dir: Path | str,
    options: ExportOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export, validate and time the run's student (and teacher); write the export report."""
    options = options or ExportOptions()
    say = log or (lambda _line: None)

    # 1. Inputs. Everything that can be wrong with them fails here, before any file is written.
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if options.tensorrt:
        _refuse_missing_tensorrt(gpu)
    inputs = read_run(run_dir)
    settings = _settings(inputs.recipe.export, options)
    with_teacher = options.teacher if options.teacher is not None else bool(inputs.recipe.teacher)
    models: dict[str, nn.Module] = {"student": inputs.student}
    if with_teacher:
        models["teacher"] = read_teacher(inputs)
    train_set, test_set = read_splits(inputs)
    int8 = _int8_job(settings, train_set, options.tensorrt) if options.int8 else None
    bench = _Bench(test_set, settings, inputs.run.root)
    given = _given_student(options.student_onnx, inputs, bench, options)
    _refuse_replacing(given, inputs.run.export_dir, models, options)
    report = ExportReport(
        run=inputs.run.root,
        recipe_sha256=inputs.recipe_sha256,
        student_sha256=file_sha256(inputs.run.student),
        dataset=bench.eval_set.name,
        eval_samples=len(bench.eval_set),
        settings=settings,
        host={"cpu": platform.processor() or platform.machine(), "gpu": gpu},
        int8=None if int8 is None else int8.settings,
    )

    # 2–5 in a staging folder inside export/: the previous export stays whole until this one
    # has finished, and one that fails or is stopped leaves it as it was.
    with _staging(inputs.run.export_dir, say) as staging:
        # 2. ONNX files for every model (and their INT8 forms).
        artifacts = {
            name: _export_model(name, model, inputs, settings, options.fp16, given, staging, say)
            for name, model in models.items()
        }
        if int8 is not None:
            for name, files in artifacts.items():
                files.append(int8.quantize(name, files, staging, say))

        with _fits_in_memory(settings.batch_sizes):
            # 3. Per model: the PyTorch reference (computed once), then ONNX Runtime.
            references: dict[str, np.ndarray] = {}
            for name, model in models.items():
                say(f"{name}: PyTorch reference on {len(bench.eval_set):,} test images")
                # Only after the export: it changes the weights' layout.
                torch_runner = TorchRunner(model)
                references[name] = predict(torch_runner.infer, bench.eval_set, bench.eval_batch)
                source = inputs.run.student if name == "student" else _teacher_file(inputs)
                report.results.append(
                    Result(
                        model=name,
                        backend=torch_runner.backend,
                        precision="fp32",
                        device=torch_runner.device,
                        file=bench.display(source),
                        size_bytes=source.stat().st_size if source is not None else None,
                        sha256=file_sha256(source) if source is not None else None,
                        accuracy=accuracy(references[name], bench.eval_set.labels),
                        parity=None,
                        latency=bench.latencies(torch_runner.infer),
                    )
                )
                if options.onnxruntime:
                    for artifact in artifacts[name]:
                        say(f"{name}: ONNX Runtime on {artifact.path.name}")
                        ort_runner = OnnxRuntimeRunner(artifact.path)
                        report.results.append(
                            bench.measure(artifact, ort_runner, artifact.path, references[name])
                        )

            # 4. TensorRT, from the same ONNX files.
            if options.tensorrt:
                try:
                    assert gpu is not None  # _refuse_missing_tensorrt refused without one
                    for files in artifacts.values():
                        for artifact in files:
                            reference = references[artifact.model]
                            report.results.append(_tensorrt(artifact, reference, bench, gpu, say))
                except UserError as error:
                    report.problems.extend(error.lines)

        # 5. Speedups, the precision comparison, warnings; the files, then the report.
        report.speedup = speedups(report.results)
        report.precisions = precision_comparison(report.results)
        report.warnings = _warnings(report.results)
        if not options.onnxruntime and not options.tensorrt:
            report.warnings.append(_unchecked_warning(artifacts, bench))
        staged = write_reports(report.to_json(), staging)
        publish(staging, inputs.run.export_dir, keep=given.path if given else None)
        report.files = {kind: inputs.run.export_dir / path.name for kind, path in staged.items()}
    return report


def _refuse_missing_tensorrt(gpu: str | None) -> None:
    """--trt where TensorRT cannot run: refused before any work, as an export without it would
    replace the previous export with one that lacks the TensorRT results asked for."""
    missing = tensorrt_missing(gpu is not None)
    if missing is not None:
        raise UserError(
            f"--trt: {missing}; nothing was exported: drop --trt to export and validate "
            "with ONNX Runtime alone"
        )


@dataclass(frozen=True)
class _Bench:
    """The evaluation set and the measuring rules every backend is put through."""

    eval_set: EvalSet
    settings: ExportConfig
    root: Path  # the run directory: report paths are relative to it

    @property
    def eval_batch(self) -> int:
        return max(EVAL_BATCH, *self.settings.batch_sizes)

    @property
    def batch_sizes_run(self) -> list[int]:
        """Every batch size a model meets: the latency batches, the evaluation batch and the
        evaluation's last, partial batch."""
        last = len(self.eval_set) % self.eval_batch
        return sorted({*self.settings.batch_sizes, self.eval_batch, *([last] if last else [])})

    def runs_only_at(self, batch: int) -> bool:
        return self.batch_sizes_run == [batch]

    def latencies(self, infer: Infer) -> dict[int, Latency]:
        return {
            batch: measure_latency(
                infer,
                self.eval_set.sample(batch),
                warmup=self.settings.warmup_runs,
                runs=self.settings.timed_runs,
            )
            for batch in self.settings.batch_sizes
        }

    def measure(
        self,
        artifact: _Artifact,
        runner: OnnxRuntimeRunner | TensorRTRunner,
        file: Path,
        reference: np.ndarray,
    ) -> Result:
        """Accuracy, parity with the PyTorch reference, and latency of one deployed file."""
        logits = predict(runner.infer, self.eval_set, self.eval_batch)
        return Result(
            model=artifact.model,
            backend=runner.backend,
            precision=artifact.precision,
            device=runner.device,
            file=self.display(file),
            size_bytes=file.stat().st_size,
            sha256=file_sha256(file),
            accuracy=accuracy(logits, self.eval_set.labels),
            parity=parity(reference, logits, tolerance_for(self.settings, artifact.precision)),
            latency=self.latencies(runner.infer),
        )

    def display(self, path: Path | None) -> str | None:
        """Paths inside the run directory are written relative to it: reports move with it;
        others absolute, for the gate to find wherever it runs. A staged file is named where
        it is published, in export/."""
        if path is None:
            return None
        if path.parent.name.startswith(STAGING_PREFIX):
            path = path.parent.parent / path.name
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path.resolve())  # as typed it would be relative to another folder


def _tensorrt(
    artifact: _Artifact, reference: np.ndarray, bench: _Bench, gpu: str, say: Callable[[str], None]
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


def _settings(recipe_export: ExportConfig, options: ExportOptions) -> ExportConfig:
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


@contextmanager
def _fits_in_memory(batch_sizes: Sequence[int]) -> Iterator[None]:
    """A latency batch too big for this machine is a bad flag, not a crash: numpy raises
    MemoryError, torch's allocators a RuntimeError (OutOfMemoryError on CUDA)."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        largest = max(batch_sizes)
        raise UserError(
            f"--batch-sizes {largest}: out of memory evaluating and timing batches of "
            f"{largest:,} images; give smaller batch sizes (or export.batch_sizes in the recipe)"
        ) from None


@contextmanager
def _staging(export_dir: Path, say: Callable[[str], None]) -> Iterator[Path]:
    """A fresh folder inside export/ for this export's files, removed however the export ends
    (publishing renames it away). Inside export/, so publishing is a rename on one disk.

    The export holds `export/.lock` throughout: two exports of one run would otherwise publish
    over each other. Holding it also proves that any other staging or publishing folder there
    belongs to an export that died without cleaning up (killed, power lost): a staging folder
    is removed, and a publish it left halfway is finished first (export/publish.py), so that
    should this export fail too, the previous export is a whole one.
    """
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
        busy = (
            f"{export_dir}: another export of this run is in progress, or a gate is reading it; "
            "wait for it to end"
        )
        lock = lock_or_refuse(export_dir / LOCK_NAME, busy)
    except FileExistsError:
        raise UserError(
            f"{export_dir}: is a file, not a folder; move it away and export again"
        ) from None
    except OSError as error:
        raise UserError(
            f"{export_dir}: cannot write the export there ({error.strerror}); make the run "
            "directory writable, or copy it somewhere writable and export the copy"
        ) from None
    try:
        _check_targets(export_dir)
        if finish_interrupted(export_dir):
            say(f"{export_dir}: put in place the export that was killed while publishing it")
        for abandoned in export_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(abandoned, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=export_dir))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()


def _check_targets(export_dir: Path) -> None:
    """A folder where the export writes a file would stop it halfway through publishing."""
    for name in (*OUR_FILES, *(f"{REPORT_NAME}.{kind}" for kind in ("json", "md", "html"))):
        if (export_dir / name).is_dir():
            raise UserError(
                f"{export_dir / name}: a folder where the export writes a file; move it away "
                "and export again"
            )


def _unchecked_warning(artifacts: dict[str, list[_Artifact]], bench: _Bench) -> str:
    """--no-onnx without --trt: which files no backend ran (the user's own named as given)."""
    files = ", ".join(
        str(bench.display(artifact.path)) for found in artifacts.values() for artifact in found
    )
    return (
        f"--no-onnx: no backend validated or timed {files}; drop --no-onnx, or add --trt, "
        "to check them"
    )


def tolerance_for(settings: ExportConfig, precision: str) -> Tolerance:
    """fp32 is judged elementwise and by agreement; fp16 and int8 by agreement only."""
    if precision == "fp32":
        return Tolerance(settings.max_abs_diff, settings.min_agreement)
    if precision == "fp16":
        return Tolerance(None, settings.fp16_min_agreement)
    return Tolerance(None, settings.int8_min_agreement)


def _given_student(
    path: Path | None, inputs: RunInputs, bench: _Bench, options: ExportOptions
) -> _Artifact | None:
    """A student ONNX file made elsewhere (optimised, quantised): checked before any work."""
    if path is None:
        return None
    proto = load_onnx(path)
    check_classifier_io(proto, path, inputs.image_shape, inputs.record["num_classes"])
    fixed = fixed_batch(proto)
    if fixed is not None and not bench.runs_only_at(fixed):
        raise UserError(
            f"{path}: the input's batch dimension is fixed at {fixed}, but it would be run at "
            f"batch sizes {', '.join(map(str, bench.batch_sizes_run))}; export it with a "
            f"dynamic batch axis, or time it with --batch-sizes {fixed} when {fixed} ≥ "
            f"{EVAL_BATCH} divides the {len(bench.eval_set):,} test images"
        )
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
    return _Artifact("student", precision, path)


def _refuse_replacing(
    given: _Artifact | None, export_dir: Path, models: dict[str, nn.Module], options: ExportOptions
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


@dataclass(frozen=True)
class _Int8Job:
    """The resolved INT8 settings and the calibration images, drawn once for every model."""

    settings: Int8Settings
    images: np.ndarray

    def quantize(
        self, name: str, files: Sequence[_Artifact], out: Path, say: Callable[[str], None]
    ) -> _Artifact:
        source = next(artifact.path for artifact in files if artifact.precision == "fp32")
        target = out / f"{name}.int8.onnx"
        say(
            f"{name}: quantising {source.name} to INT8 ({len(self.images)} calibration "
            f"images, {self.settings.calibration_method}) → export/{target.name}"
        )
        quantize_int8(source, target, self.images, self.settings, name=name)
        return _Artifact(name, "int8", target)


def _int8_job(settings: ExportConfig, train: EvalSet, tensorrt: bool) -> _Int8Job:
    """Check the INT8 settings and draw the calibration images, before any export work."""
    resolved = resolve_settings(settings.int8, tensorrt=tensorrt)
    images = calibration_batch(train, settings.int8.calibration_images, settings.int8.seed)
    return _Int8Job(resolved, images)


def _export_model(
    name: str,
    model: nn.Module,
    inputs: RunInputs,
    settings: ExportConfig,
    fp16: bool,
    given: _Artifact | None,
    out: Path,
    say: Callable[[str], None],
) -> list[_Artifact]:
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
        artifacts.append(_Artifact(name, precision, path))
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
        "run": inputs.run.root.name,
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


def _teacher_file(inputs: RunInputs) -> Path | None:
    teacher = inputs.recipe.teacher
    return teacher.checkpoint if teacher is not None and teacher.checkpoint else None


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


def precision_comparison(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Each reduced-precision file against the fp32 file of the same model on the same backend:
    what it cost in accuracy and agreement, and what it bought in latency and size."""
    fp32 = {(r.model, r.backend): r for r in results if r.precision == "fp32"}
    rows = []
    for r in results:
        base = fp32.get((r.model, r.backend))
        if r.precision == "fp32" or base is None:
            continue
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
            }
        )
    return rows


def _warnings(results: Sequence[Result]) -> list[str]:
    lines = []
    for r in results:
        what = f"{r.model} {r.backend} {r.precision}"
        if r.parity is not None and not r.parity.passed:
            limit = (
                f"max |diff| {r.parity.max_abs_diff:.2e} (limit {r.parity.tolerance_max_abs:g}), "
                if r.parity.tolerance_max_abs is not None
                else ""
            )
            lines.append(
                f"parity failed for {what}: {limit}top-1 agreement "
                f"{r.parity.top1_agreement:.2f} % (minimum {r.parity.min_agreement:.2f} %)"
            )
        for batch, latency in r.latency.items():
            if latency.noisy:
                lines.append(
                    f"noisy latency for {what} at batch {batch}: coefficient of variation "
                    f"{latency.cv:.2f}; close other programs or raise --runs"
                )
    return lines
