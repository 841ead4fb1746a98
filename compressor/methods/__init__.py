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
from torch import nn

from compressor.errors import UserError
from compressor.models.features import LogitsAndFeatures
from compressor.recipe import (
    AMKDMethod,
    BSSMethod,
    CEMethod,
    KDMethod,
    MethodConfig,
    TripletMethod,
)


@dataclass(frozen=True)
class TrainProgress:
    """Where training stands, for methods whose loss weights follow a schedule over epochs."""

    epoch: int  # 0-based
    epochs: int
    within_epoch: float = 0.0  # share of this epoch's steps already taken, in [0, 1)

    @property
    def elapsed_epochs(self) -> float:
        """Continuous training time in epochs, so schedules move per step, not per epoch."""
        return self.epoch + self.within_epoch


@dataclass
class StepOutput:
    """What one training step produced."""

    loss: torch.Tensor  # scalar to backpropagate
    parts: dict[str, torch.Tensor]  # named, detached scalar loss parts (logged as epoch means)
    logits: torch.Tensor  # student logits on the clean batch, for training accuracy
    stats: dict[str, float] = field(default_factory=dict)  # e.g. attack statistics per batch


class Method(Protocol):
    """A distillation method: the engine calls `step` once per batch inside autocast.

    `indices` (int64 [B]) are the batch's data-set indices, which name a sample across epochs:
    BSS and AMKD in bank mode key their reused boundary samples by them; other methods ignore
    them, and without them (None) bank mode cannot run.
    """

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        progress: TrainProgress,
        indices: torch.Tensor | None = None,
    ) -> StepOutput: ...


def training_module(config: MethodConfig, student: nn.Module) -> nn.Module:
    """The module the engine trains through (and wraps in DistributedDataParallel).

    The student itself, except for AMKD in feature space: its triplet needs the penultimate
    features of the same pass, and DDP synchronises gradients only for passes through its own
    forward, so the student is wrapped to return (logits, features) first.
    """
    if isinstance(config, AMKDMethod) and config.embedding == "features":
        return LogitsAndFeatures(student)
    return student


def build_method(
    config: MethodConfig,
    student: nn.Module,
    teacher: nn.Module | None = None,
    *,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    dataset_size: int | None = None,
) -> Method:
    """The method the recipe's `method:` section names, bound to its models.

    `teacher` must be frozen and in eval mode; methods only call it (never `.train()`,
    never an optimiser), so a TorchScript or `torch.export` teacher works too. `bounds` is
    the per-channel (low, high) range of valid normalised inputs, e.g.
    `boundary.normalized_bounds(mean, std)`; the boundary-sample search clamps to it
    (BSS, AMKD). Without it, adversarial images are not range-limited. `dataset_size` is the
    training split's length, which sizes the boundary-sample bank of BSS and AMKD with
    `method.bank_epochs` > 1 (required then).
    """
    # Imported here: the method modules import the contract defined above.
    from compressor.methods.amkd import AMKD
    from compressor.methods.bss import BSS
    from compressor.methods.ce import CE
    from compressor.methods.kd import KD
    from compressor.methods.triplet import TripletKD

    if isinstance(config, CEMethod):
        return CE(config, student)
    if teacher is None:
        raise UserError(
            f"method {config.name!r} distils from a teacher, but the recipe has no `teacher:` "
            "section; add one (e.g. teacher: {arch: resnet56, checkpoint: teacher.pt}) or use "
            "method: {name: ce} to train without a teacher"
        )
    if isinstance(config, KDMethod):
        return KD(config, student, teacher)
    if isinstance(config, TripletMethod):
        return TripletKD(config, student, teacher)
    if isinstance(config, BSSMethod):
        return BSS(config, student, teacher, bounds, dataset_size)
    return AMKD(config, student, teacher, bounds, dataset_size)
