"""The bench every exported model is put through: the evaluation set, its batch size, and
the latency batches of the export settings; accuracy, parity with the PyTorch reference and
latency of one file make one `Result`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.io import file_sha256
from compressor.recipe import ExportConfig
from export.latency import Latency, measure_latency
from export.onnxruntime_runner import OnnxRuntimeRunner
from export.publish import STAGING_PREFIX
from export.results import Result
from export.settings import tolerance_for
from export.tensorrt_runner import TensorRTRunner
from export.validate import EvalSet, Infer, accuracy, parity, predict

# Evaluation runs in batches of at least this size (bigger when a latency batch is bigger):
# large enough to keep every backend busy, and the TensorRT profile's maximum batch.
EVAL_BATCH = 64


@dataclass(frozen=True)
class Artifact:
    """An ONNX file to validate: which model, at which precision."""

    model: str
    precision: str
    path: Path


@dataclass(frozen=True)
class Bench:
    """The evaluation set and the measuring rules every backend is put through."""

    eval_set: EvalSet
    settings: ExportConfig
    root: Path  # the run directory: report paths are relative to it
    # CPU threads for every backend: PyTorch's (OMP_NUM_THREADS, else one per physical core),
    # given to ONNX Runtime too, whose own default ignores OMP_NUM_THREADS: with it set to 1,
    # PyTorch ran on one thread, ONNX Runtime on every core, and the speedups compared the two.
    threads: int

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
        artifact: Artifact,
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
        """Paths inside the run directory are written relative to it, with '/' on every OS:
        reports move with it (a Windows `export\\student.onnx` read on Linux as one file name
        that is "not here", and the gate passed a replaced model unchecked); others absolute,
        for the gate to find wherever it runs. A staged file is named where it is published,
        in export/."""
        if path is None:
            return None
        if path.parent.name.startswith(STAGING_PREFIX):
            path = path.parent.parent / path.name
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path.resolve())  # as typed it would be relative to another folder
