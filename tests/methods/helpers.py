"""What several method test files share besides fixtures: one training step, two points in
training (before and after the attack fades out at 75 %)."""

from __future__ import annotations

import torch

from compressor.methods import StepOutput, TrainProgress

EARLY = TrainProgress(epoch=0, epochs=10)
LATE = TrainProgress(epoch=8, epochs=10)  # past 75 %: beta = 0


def step(method, batch, progress=EARLY, seed: int = 0) -> StepOutput:
    """One step, seeded: the attack draws its targets at random, and tests compare steps."""
    torch.manual_seed(seed)
    images, labels = batch
    return method.step(images, labels, progress)
