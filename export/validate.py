"""Parity and accuracy of a deployed model against its PyTorch reference: numpy only.

Every backend is a function from float32 images to float32 logits, so one evaluation loop
serves PyTorch, ONNX Runtime and TensorRT alike, and the PyTorch reference logits are
computed once per model and compared to each backend with plain numpy.

Tolerances are precision-aware: fp32 must match elementwise (1e-4 by default) and agree on
the top-1 class; fp16 and int8 are judged by top-1 agreement (and the accuracy the gate
checks), because their logits legitimately differ by 1e-3..1e-1 while the decisions match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Infer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalSet:
    """The run's evaluation images as uint8 [N, C, H, W], normalised one batch at a time.

    Kept as uint8 (4x smaller than float32) so a 10k-image test set of 64x64 images costs
    120 MB, not 490 MB.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Images [start:stop] as float32, (pixels / 255 - mean) / std per channel."""
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return (self.images[start:stop].astype(np.float32) / 255.0 - mean) / std

    def sample(self, size: int) -> np.ndarray:
        """A batch of exactly `size` real images (cycling when the set is smaller)."""
        index = np.arange(size) % len(self)
        return self.batch(0, len(self))[index] if size > len(self) else self.batch(0, size)


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one precision; `max_abs_diff` None: not judged elementwise."""

    max_abs_diff: float | None
    min_agreement: float  # percent


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # percent, vs the same model in PyTorch fp32
    tolerance_max_abs: float | None
    min_agreement: float
    passed: bool
    logit_scale: float | None = None  # max |reference logit|: float32 rounding grows with it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def predict(infer: Infer, eval_set: EvalSet, batch_size: int) -> np.ndarray:
    """Logits [N, classes] for the whole set, `batch_size` images per call."""
    chunks = [
        infer(eval_set.batch(start, start + batch_size))
        for start in range(0, len(eval_set), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32, copy=False)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(np.mean(logits.argmax(axis=1) == labels))


def parity(reference: np.ndarray, logits: np.ndarray, tolerance: Tolerance) -> Parity:
    """Compare a backend's logits with the PyTorch fp32 reference on the same images."""
    if reference.shape != logits.shape:
        raise ValueError(f"logits {logits.shape} do not match the reference {reference.shape}")
    difference = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    # NaN compares False everywhere, so a NaN logit must fail explicitly, not pass silently.
    finite = bool(np.isfinite(logits).all())
    max_diff = float(difference.max()) if finite else float("inf")
    # Counted, then divided: a mean reads 0.7000000000000001 % for 7 of 1,000 in report.json.
    agreed = int(np.count_nonzero(logits.argmax(axis=1) == reference.argmax(axis=1)))
    agreement = 100.0 * agreed / len(reference)
    within = tolerance.max_abs_diff is None or max_diff <= tolerance.max_abs_diff
    return Parity(
        max_abs_diff=max_diff,
        mean_abs_diff=float(difference.mean()) if finite else float("inf"),
        top1_agreement=agreement,
        tolerance_max_abs=tolerance.max_abs_diff,
        min_agreement=tolerance.min_agreement,
        passed=finite and within and agreement >= tolerance.min_agreement,
        logit_scale=float(np.abs(reference).max()) if reference.size else None,
    )
