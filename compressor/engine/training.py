"""One training epoch: batches in, optimiser steps out, loss parts and throughput measured.

Reads top to bottom like torchvision's reference `train_one_epoch`. Loss parts are summed on
the device and read back only every few steps, so the GPU is not stalled by a host sync per
step; the same read-back is where a NaN or inf loss is caught and named.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from compressor.data import BatchLoader
from compressor.engine.device import DeviceSetup
from compressor.engine.distributed import Distributed
from compressor.engine.schedule import lr_factor, set_lr
from compressor.errors import UserError
from compressor.methods import Method, TrainProgress
from compressor.methods.boundary import PER_ATTACKED_STATS
from compressor.recipe import TrainConfig

SYNC_EVERY = 10
_CORRECT, _IMAGES = "_correct", "_images"  # counters kept beside the loss parts
# on_step(step, steps, running loss, running train top-1 %, images so far): drives a live bar.
StepCallback = Callable[[int, int, float, float, int], None]


@dataclass(frozen=True)
class EpochResult:
    loss: float
    parts: dict[str, float]  # epoch means of each named loss part
    stats: dict[str, float]  # epoch means of the method's statistics (see _epoch_stats)
    train_accuracy: float  # percent, on the augmented training batches
    images_per_second: float
    lr: float  # at the end of the epoch
    seconds: float


class NonFiniteLoss(UserError):
    """Training diverged; the run stops before a bad epoch reaches the checkpoint."""


def _check_finite(sums: dict[str, float], epoch: int, step: int, mixed_precision: bool) -> None:
    bad = [name for name, value in sums.items() if not math.isfinite(value)]
    if bad:
        parts = [name for name in bad if name != "loss"]
        what = "the loss" + (f" (its parts {', '.join(parts)})" if parts else "")
        amp = (
            ", or use train.amp: off to rule out mixed-precision overflow,"
            if mixed_precision
            else ""
        )
        # A distillation term can overflow on its own (a temperature whose T² does): the
        # learning rate is then not what to change.
        terms = [name for name in parts if name != "ce"]
        method = f" (or the method's temperature or {'/'.join(terms)} weight)" if terms else ""
        raise NonFiniteLoss(
            f"{what} became NaN or infinite in epoch {epoch + 1} by step {step + 1}; the epoch "
            f"is not checkpointed. Lower train.optimizer.lr{method}{amp} and start again with "
            "--overwrite"
        )


def _totals(values: dict[str, torch.Tensor], distributed: Distributed) -> dict[str, float]:
    """Sums over every process, read back in one transfer (and one all-reduce)."""
    if not values:
        return {}
    summed = distributed.sum(torch.stack([value.double() for value in values.values()]))
    return dict(zip(values, summed.tolist(), strict=True))


def _epoch_stats(sums: dict[str, float], steps: int, processes: int) -> dict[str, float]:
    """Per-batch means, except the attack statistics that are means over attacked samples:
    those are divided by the samples attacked, and left out when there were none. `sums`
    adds every process's figures: a mean divides by their batches, steps × processes, but
    the count of samples attacked by the steps alone, so that it is per batch of
    `train.batch_size` (the global batch) whatever the process count."""
    attacked = sums.get("attacked", 0.0)

    def divisor(name: str) -> float:
        if name in PER_ATTACKED_STATS:
            return attacked
        return max(steps, 1) if name == "attacked" else max(steps * processes, 1)

    return {
        name: value / divisor(name)
        for name, value in sums.items()
        if name not in PER_ATTACKED_STATS or attacked > 0
    }


def train_one_epoch(
    student: nn.Module,
    method: Method,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    setup: DeviceSetup,
    config: TrainConfig,
    epoch: int,
    distributed: Distributed,
    on_step: StepCallback | None = None,
) -> EpochResult:
    """Train `student` for one epoch, reporting running figures through `on_step`.

    The method gets each batch's data-set indices too (bank mode keys its samples by them).

    Under torchrun every figure is summed over the processes, so all of them see the same
    numbers and stop together if the loss diverges.
    """
    student.train()
    loader.set_epoch(epoch)
    steps = len(loader)
    zero = torch.zeros((), dtype=torch.float64, device=setup.device)
    sums: dict[str, torch.Tensor] = defaultdict(zero.clone)
    stats_sums: dict[str, float] = defaultdict(float)
    totals: dict[str, float] = {}
    lr = config.optimizer.lr
    started = time.perf_counter()
    for step, (images, labels, indices) in enumerate(loader.indexed()):
        lr = config.optimizer.lr * lr_factor(config.schedule, epoch + step / steps, config.epochs)
        set_lr(optimizer, lr)
        progress = TrainProgress(epoch=epoch, epochs=config.epochs, within_epoch=step / steps)
        with setup.autocast():
            output = method.step(images, labels, progress, indices)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(output.loss).backward()
        if config.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(student.parameters(), config.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()

        sums["loss"] += output.loss.detach()
        for name, value in output.parts.items():
            sums[name] += value.detach()
        attacked = output.stats.get("attacked", 0.0)
        for name, figure in output.stats.items():
            stats_sums[name] += figure * attacked if name in PER_ATTACKED_STATS else figure
        sums[_CORRECT] += (output.logits.detach().argmax(dim=1) == labels).sum()
        sums[_IMAGES] += labels.numel()
        if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
            totals = _totals(sums, distributed)
            _check_finite(totals, epoch, step, setup.amp_dtype is not None)
            if on_step is not None:
                on_step(
                    step + 1,
                    steps,
                    totals["loss"] / ((step + 1) * distributed.world_size),
                    100.0 * totals[_CORRECT] / totals[_IMAGES],
                    int(totals[_IMAGES]),
                )
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    seconds = time.perf_counter() - started
    batches = max(steps * distributed.world_size, 1)
    # On the device: NCCL all-reduces only GPU tensors.
    stats = _totals(
        {k: torch.tensor(v, device=setup.device) for k, v in stats_sums.items()}, distributed
    )
    return EpochResult(
        loss=totals.get("loss", 0.0) / batches,
        parts={
            name: value / batches
            for name, value in totals.items()
            if name not in ("loss", _CORRECT, _IMAGES)
        },
        stats=_epoch_stats(stats, steps, distributed.world_size),
        train_accuracy=100.0 * totals.get(_CORRECT, 0.0) / max(totals.get(_IMAGES, 0.0), 1.0),
        images_per_second=totals.get(_IMAGES, 0.0) / max(seconds, 1e-9),
        lr=lr,
        seconds=seconds,
    )
