"""The teacher as a run uses it: loaded, checked to score, its weights fingerprinted, folded
and placed on the device. `compress teacher` runs the same steps alone, on the test split
only, as the quick check before a long distillation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compressor.data import (
    EvalData,
    class_changes,
    dataset_channels,
    dataset_num_classes,
    load_test_split,
    with_channels_hint,
)
from compressor.data.sets import image_text
from compressor.engine.device import DeviceSetup, restored_torch_settings, setup_device
from compressor.engine.evaluate import Evaluation, check_finite_logits, evaluate
from compressor.engine.scoring import ModelSummary, eval_loader, model_summary
from compressor.errors import ChannelsDiffer, UserError
from compressor.models import check_builds_the_same_weights, check_teacher_output, load_teacher
from compressor.models.checkpoint import RecordedInputs, recorded_inputs
from compressor.models.fingerprint import weights_sha256
from compressor.models.inference import fold_batchnorm
from compressor.preflight import check_recipe
from compressor.recipe import Recipe


def ready_teacher(
    teacher: nn.Module, setup: DeviceSetup, probe: torch.Tensor | None = None
) -> nn.Module:
    """The frozen teacher as training runs it: batch norm folded, on the device, its layout.
    `probe` (a few images) checks the fold kept the teacher's logits."""
    teacher = fold_batchnorm(teacher, probe).to(setup.device)
    if setup.channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    return teacher


@dataclass(frozen=True)
class PreparedTeacher:
    model: nn.Module  # ready to run: folded, on the device
    evaluation: Evaluation
    summary: ModelSummary
    weights_sha256: str  # of the weights as loaded (compressor/models/fingerprint.py)
    warnings: tuple[str, ...] = ()  # said before the run goes on


@dataclass(frozen=True)
class PinnedTeacher:
    """The teacher as loaded, and which one: its weights hash, taken before folding."""

    model: nn.Module
    weights_sha256: str  # compressor/models/fingerprint.py
    # The image shape, mean/std and classes of the data it was trained on, where its file
    # records them (a student.pt that compress wrote).
    recorded_inputs: RecordedInputs | None = None


def pin_teacher(recipe: Recipe) -> PinnedTeacher:
    """Load the recipe's teacher and hash its weights, without reading any image (the class
    and channel counts come from the data set's layout): a teacher that cannot load, or is
    not the one a resumed run was distilled from, is refused before minutes of decoding."""
    assert recipe.teacher is not None
    num_classes, channels = dataset_num_classes(recipe.data), dataset_channels(recipe.data)
    try:
        loaded = load_teacher(recipe.teacher, num_classes, channels)
    except ChannelsDiffer as error:
        raise with_channels_hint(error, recipe.data) from error.__cause__
    fingerprint = weights_sha256(loaded)
    checkpoint = recipe.teacher.checkpoint
    if checkpoint is None:
        check_builds_the_same_weights(recipe.teacher, num_classes, channels, fingerprint)
    recorded = None if checkpoint is None else recorded_inputs(checkpoint)
    return PinnedTeacher(loaded, fingerprint, recorded)


def _inputs_unlike_training(pinned: PinnedTeacher, data: EvalData) -> list[str]:
    """The teacher's file records the data it was trained on; images shaped or normalised
    otherwise are inputs it never saw. Scoring may still pass teacher.min_accuracy, so it is
    said: the usual cause is data.mean/std left at another data set's values."""
    recorded = pinned.recorded_inputs
    if recorded is None:
        return []
    shape, mean, std = recorded.image_shape, recorded.mean, recorded.std
    same_stats = len(mean) == len(data.mean) and len(std) == len(data.std)
    close = same_stats and all(
        abs(a - b) <= 1e-4 for a, b in zip([*mean, *std], [*data.mean, *data.std], strict=True)
    )
    if list(data.image_shape) == shape and close:
        return []

    def rounded(values: tuple[float, ...] | list[float]) -> str:
        return "[" + ", ".join(f"{value:.4g}" for value in values) + "]"

    return [
        f"the teacher was trained on {image_text(shape)} images normalised with mean "
        f"{rounded(mean)}, std {rounded(std)} (recorded in its file), but the recipe's data "
        f"gives {image_text(data.image_shape)} with mean {rounded(data.mean)}, std "
        f"{rounded(data.std)}; set data.mean/std (and data.image_size) to the teacher's"
    ]


def _classes_unlike_training(pinned: PinnedTeacher, data: EvalData) -> list[str]:
    """The teacher's file records the class names it was trained on. An image folder's labels
    are its sorted folder names: one renamed shifts every label after it, and the teacher is
    scored, and distilled, against the wrong classes (0 % with none of them right)."""
    recorded = pinned.recorded_inputs
    if recorded is None or recorded.classes is None:
        return []
    changes = class_changes(recorded.classes, data.classes)
    if changes is None:
        return []
    return [
        f"the teacher was trained on other classes than the data's (its file records them): "
        f"{changes}; label i is the i-th sorted folder name, so name the class folders as the "
        "teacher's were"
    ]


def _at_chance(evaluation: Evaluation, data: EvalData, min_accuracy: float) -> list[str]:
    """A teacher no better than guessing teaches nothing, and teacher.min_accuracy (0 unless
    set) lets it through: the usual cause is classes in another order, or the wrong weights."""
    chance = 100 / data.num_classes
    if evaluation.accuracy > chance:
        return []
    return [
        f"the teacher scores {evaluation.accuracy:.2f} %, no better than chance ({chance:.2f} % "
        f"for {data.num_classes} classes): check teacher.checkpoint and that the classes are in "
        "the order it was trained on; "
        + (
            f"raise teacher.min_accuracy ({min_accuracy:g} %) above chance to refuse such a teacher"
            if min_accuracy
            else "set teacher.min_accuracy to refuse such a teacher"
        )
    ]


def prepare_teacher(
    recipe: Recipe, pinned: PinnedTeacher, data: EvalData, setup: DeviceSetup
) -> PreparedTeacher:
    """Ready the pinned teacher and refuse to distil from one that does not score."""
    assert recipe.teacher is not None
    test_loader = eval_loader(data.test, data, recipe, setup)
    # A TorchScript, exported or entrypoint teacher has no class count to check at load time:
    # one real batch shows a wrong output shape as one line, not as a crash inside a loss.
    probe, _ = next(iter(test_loader))
    teacher = ready_teacher(pinned.model, setup, probe[:2])
    check_teacher_output(teacher, probe[:2], data.num_classes)
    evaluation = evaluate(teacher, test_loader, setup)
    check_finite_logits(
        evaluation,
        "teacher",
        f"of {data.name}",
        "check teacher.checkpoint, and that data.mean/std match the teacher's training",
    )
    if evaluation.accuracy < recipe.teacher.min_accuracy:
        named = recipe.teacher.arch or recipe.teacher.entrypoint  # not a self-contained file
        builder = f"{recipe.teacher.builder()} and " if named else ""
        raise UserError(
            f"the teacher scores {evaluation.accuracy:.2f} % on the {data.name} test set, below "
            f"teacher.min_accuracy {recipe.teacher.min_accuracy:.2f} %; check {builder}"
            "teacher.checkpoint, and that data.mean/std"
            + (" and data.image_size" if recipe.data.image_size is not None else "")
            + " match the teacher's training"
        )
    summary = model_summary(pinned.model, evaluation, data)
    warnings = (
        *_classes_unlike_training(pinned, data),
        *_inputs_unlike_training(pinned, data),
        *_at_chance(evaluation, data, recipe.teacher.min_accuracy),
    )
    return PreparedTeacher(teacher, evaluation, summary, pinned.weights_sha256, warnings)


def check_teacher(recipe: Recipe, source: str) -> PreparedTeacher:
    """Load and score the recipe's teacher alone: the quick check before a long run."""
    if recipe.teacher is None:
        raise UserError(f"{source}: teacher: the recipe has no teacher: section to check")
    check_recipe(recipe, source, needs_teacher=True)
    with restored_torch_settings():
        setup = setup_device(recipe.train)
        pinned = pin_teacher(recipe)
        # The test split alone: scoring needs no training images.
        return prepare_teacher(recipe, pinned, load_test_split(recipe.data), setup)


def teacher_source(recipe: Recipe) -> str:
    """Where the teacher came from, as the run resolved it: a recipe run from another folder
    than its author's may find another file at a relative path, and this line shows which."""
    teacher = recipe.teacher
    assert teacher is not None
    if teacher.checkpoint is not None:
        return str(teacher.checkpoint)
    return f"from {teacher.builder()} (no checkpoint)"
