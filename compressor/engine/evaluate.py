"""Evaluation: top-1 accuracy, loss and per-sample predictions on a whole split.

Predictions are kept so reports can compare teacher and student sample by sample (top-1
agreement) without a second pass.

Evaluation runs in full fp32 whatever the training precision: no autocast, no TF32. The
accuracies in report.json feed the teacher check, the gate and the export's comparison with
ONNX Runtime, so they must be what the fp32 model scores on any device. On an H100 with bf16
autocast the ResNet-56 teacher scored 93.43 % instead of its fp32 93.39 %.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from compressor.engine.device import DeviceSetup, full_fp32
from compressor.errors import UserError


@dataclass(frozen=True)
class Evaluation:
    accuracy: float  # top-1, percent
    loss: float  # mean cross-entropy
    predictions: torch.Tensor  # int64 [N] on the CPU, in loader order
    count: int
    # Images whose logits hold a NaN or an infinity: their "prediction" is argmax's pick
    # among NaNs (class 0), and the accuracy counts it as if it were one.
    nonfinite: int = 0


@torch.inference_mode()
def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], setup: DeviceSetup
) -> Evaluation:
    """Run `model` as it is (the caller puts it in eval mode) over every batch, in fp32.

    `setup` gives the device; autocast is switched off even inside a caller's autocast block
    (module docstring).
    """
    correct = torch.zeros((), dtype=torch.int64, device=setup.device)
    nonfinite = torch.zeros((), dtype=torch.int64, device=setup.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=setup.device)
    predictions = []
    for images, labels in batches:
        with torch.autocast(setup.device.type, enabled=False), full_fp32():
            logits = model(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        predicted = logits.argmax(dim=1)
        correct += (predicted == labels).sum()
        nonfinite += (~torch.isfinite(logits)).any(dim=1).sum()
        predictions.append(predicted)
    all_predictions = (
        torch.cat(predictions).cpu() if predictions else torch.empty(0, dtype=torch.int64)
    )
    count = all_predictions.numel()
    if count == 0:
        return Evaluation(0.0, 0.0, all_predictions, 0)
    return Evaluation(
        accuracy=100.0 * correct.item() / count,
        loss=loss_sum.item() / count,
        predictions=all_predictions,
        count=count,
        nonfinite=int(nonfinite.item()),
    )


def check_finite_logits(evaluation: Evaluation, model: str, when: str, fix: str) -> None:
    """Refuse scores made of NaN or infinite logits: the accuracy is then argmax's pick among
    NaNs (one class for every image, "10 %"), and the run, the export's reference and the
    gate would go on as if the model had learnt that much. A model whose training loss is
    finite can still give them in eval mode (a batch norm's running statistics overflow)."""
    if evaluation.nonfinite:
        raise UserError(
            f"the {model}'s logits are NaN or infinite on {evaluation.nonfinite} of the "
            f"{evaluation.count} test images {when}; {fix}"
        )


def agreement(first: torch.Tensor, second: torch.Tensor) -> float:
    """Percentage of samples on which two prediction vectors agree."""
    if first.numel() == 0:
        return 0.0
    # Counted as an integer, divided in Python: a float32 mean reads 16.500000655651093.
    return 100.0 * int((first == second).sum().item()) / first.numel()
