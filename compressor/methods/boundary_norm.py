"""How the student's BatchNorm layers see the boundary samples in a training step.

BSS's reference script runs the student on the boundary samples as a second forward pass in
training mode. BatchNorm then normalises them by their own batch (`attack.fraction` of the
batch at most, a quarter by default) and also folds that batch into its running statistics,
which are what the student is evaluated and deployed with, although the samples are off the
clean distribution. The modes:

- `update` — the reference (BSS's default): batch statistics, folded into the running ones.
- `batch` — batch statistics; the running statistics are left to the clean batches (AMKD's
  default). The losses and gradients are those of `update` (a training-mode BatchNorm never
  reads its running statistics; bitwise on the CPU, tested), so what changes is the model
  that is evaluated: during the attack epochs, and after them where the clean steps since do
  not wash the boundary samples out (an attack to the last step, `momentum=None` layers).
- `running` — normalise by the running statistics, as the deployed student does, and update
  nothing. This changes training (an ablation; docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from compressor.recipe import BoundaryNorm


@contextmanager
def boundary_norm(model: nn.Module, mode: BoundaryNorm) -> Iterator[None]:
    """Run the block's forward passes with `model`'s BatchNorm layers in `mode`, then restore.

    Only layers in training mode are touched: an eval-mode layer already normalises by, and
    keeps, its running statistics. Both modes flip a flag that BatchNorm reads in its forward
    pass (`training`; `track_running_stats`, which with training on means batch statistics
    and no update, the batch counter included), so no buffer is copied on the hot path.
    """
    if mode == "update":
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    attribute = "training" if mode == "running" else "track_running_stats"
    saved = [getattr(layer, attribute) for layer in layers]
    for layer in layers:
        setattr(layer, attribute, False)
    try:
        yield
    finally:
        for layer, value in zip(layers, saved, strict=True):
            setattr(layer, attribute, value)
