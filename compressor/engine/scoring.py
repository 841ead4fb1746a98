"""Scoring a model on the test split, the same way for the teacher and the student: the loader
that feeds it, and the summary (accuracy, parameters, FLOPs) reports compare them by."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compressor.data import BatchLoader, EvalData, ImageSet
from compressor.engine.device import DeviceSetup
from compressor.engine.evaluate import Evaluation
from compressor.models import count_flops, count_parameters
from compressor.recipe import Recipe


@dataclass(frozen=True)
class ModelSummary:
    accuracy: float
    parameters: int
    flops: int


def eval_loader(split: ImageSet, data: EvalData, recipe: Recipe, setup: DeviceSetup) -> BatchLoader:
    """Batches of `split` as evaluation sees them: normalised, in order, no augmentation."""
    return BatchLoader(
        split,
        batch_size=recipe.train.eval_batch_size,
        device=setup.device,
        mean=data.mean,
        std=data.std,
        train=False,
        channels_last=setup.channels_last,
    )


def model_summary(model: nn.Module, evaluation: Evaluation, data: EvalData) -> ModelSummary:
    """Accuracy and size; the size of the model as defined, batch norm unfolded, so teacher
    and student compare like for like and the counts match the architectures' usual ones."""
    return ModelSummary(
        accuracy=evaluation.accuracy,
        parameters=count_parameters(model),
        flops=count_flops(model, data.image_shape),
    )
