"""Distillation methods behind one interface: CE, KD, BSS, triplet-KD and AMKD.

Every method turns a clean training batch into a loss. The engine owns the optimiser, AMP,
logging and checkpoints; a method owns what happens between the batch and the loss (teacher
forward passes, the boundary-sample search, the loss parts), so adding a method never touches
the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class TrainProgress:
    """Where training stands, for methods whose loss weights follow a schedule over epochs."""

    epoch: int  # 0-based
    epochs: int


@dataclass
class StepOutput:
    """What one training step produced."""

    loss: torch.Tensor  # scalar to backpropagate
    parts: dict[str, torch.Tensor]  # named, detached scalar loss parts (logged as epoch means)
    logits: torch.Tensor  # student logits on the clean batch, for training accuracy
    stats: dict[str, float] = field(default_factory=dict)  # e.g. attack statistics per batch


class Method(Protocol):
    """A distillation method: the engine calls `step` once per batch inside autocast."""

    needs_teacher: bool

    def step(
        self, images: torch.Tensor, labels: torch.Tensor, progress: TrainProgress
    ) -> StepOutput: ...
