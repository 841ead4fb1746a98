"""Optimiser and learning-rate schedule.

The learning rate is a pure function of the (fractional) epoch, set on the optimiser before
every step. That keeps resume exact without saving scheduler objects, and lets warm-up and
cosine decay move per step instead of jumping once per epoch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compressor.recipe import OptimizerConfig, ScheduleConfig


def build_optimizer(
    parameters: list[nn.Parameter], config: OptimizerConfig
) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(config: ScheduleConfig, epoch: float, epochs: int) -> float:
    """Multiplier on the base learning rate at fractional `epoch` of `epochs`."""
    if config.warmup_epochs and epoch < config.warmup_epochs:
        return (epoch + 1e-3) / config.warmup_epochs
    if config.name == "multistep":
        passed = sum(1 for milestone in config.milestones if epoch >= milestone)
        return config.gamma**passed
    if config.name == "cosine":
        span = max(epochs - config.warmup_epochs, 1e-9)
        progress = min(max((epoch - config.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
