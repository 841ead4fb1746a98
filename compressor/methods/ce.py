"""Plain cross-entropy training: the no-teacher baseline every distillation run is judged by."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compressor.methods import StepOutput, TrainProgress
from compressor.recipe import CEMethod


class CE:
    """L = CE(student(x), y)."""

    def __init__(self, config: CEMethod, student: nn.Module) -> None:
        self.config = config
        self.student = student

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        progress: TrainProgress,
        indices: torch.Tensor | None = None,
    ) -> StepOutput:
        logits = self.student(images)
        ce = F.cross_entropy(logits.float(), labels)
        return StepOutput(loss=ce, parts={"ce": ce.detach()}, logits=logits)
