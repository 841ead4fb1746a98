"""Checks a recipe against the world before any work starts.

The schema (recipe/) knows what a valid recipe looks like; this module knows whether it can
run here: files exist, architectures are known, the teacher and the data agree on the number
of classes. All problems are collected and reported together, one line each, so a user fixes
a recipe in one pass instead of one failed run per typo.
"""

from __future__ import annotations

from pathlib import Path

import torch

from compressor.data import (
    check_crop_padding,
    check_stats_channels,
    dataset_channels,
    dataset_image_size,
    dataset_num_classes,
    with_channels_hint,
)
from compressor.engine.device import amp_dtype, select_device
from compressor.errors import UserError
from compressor.methods.amkd import check_feature_embedding, uses_feature_embedding
from compressor.methods.bss import attacking_epochs
from compressor.models import (
    check_builds_the_same_weights,
    check_teacher_output,
    create_model,
    detect_format,
    is_known_model,
    list_models,
    load_teacher,
    student_kwargs,
)
from compressor.models.fingerprint import weights_sha256
from compressor.models.probe import check_student_output
from compressor.models.registry import did_you_mean
from compressor.recipe import AMKDMethod, BSSMethod, Recipe
from compressor.recipe.percent import fractions_for_percent


def _unknown_arch(field: str, name: str) -> str:
    return (
        f"{field}: {name!r} is not a known architecture{did_you_mean(name)}; allowed: "
        f"{', '.join(list_models())}, "
        "or any torchvision classification model name (e.g. resnet18, mobilenet_v3_small)"
    )


def _in_section(section: str, line: str) -> str:
    """'section: line', unless the line already names a field of that section
    ('teacher.entrypoint m:f: ...'): the field says where, and the section again stutters."""
    return line if line.startswith(f"{section}.") else f"{section}: {line}"


def preflight_problems(recipe: Recipe, *, needs_teacher: bool) -> list[str]:
    """Problems as 'field: what is wrong; how to fix' lines (without the file name)."""
    problems: list[str] = []
    num_classes: int | None = None
    try:
        num_classes = dataset_num_classes(recipe.data)
    except UserError as error:
        problems.extend(_in_section("data", line) for line in error.lines)
    try:
        check_stats_channels(recipe.data)
        if num_classes is not None and recipe.data.crop_padding is not None:
            check_crop_padding(recipe.data, *dataset_image_size(recipe.data))
    except UserError as error:
        problems.extend(error.lines)

    if not is_known_model(recipe.student.arch):
        problems.append(_unknown_arch("student.arch", recipe.student.arch))

    teacher = recipe.teacher
    method_needs_teacher = recipe.method.name != "ce"
    if teacher is None:
        if method_needs_teacher:
            problems.append(
                f"teacher: method {recipe.method.name!r} distils from a teacher, but the recipe "
                "has no teacher: section; add one (arch + checkpoint) or use method: {name: ce}"
            )
        elif needs_teacher:
            problems.append(
                "teacher: distillation needs a teacher: section (arch + checkpoint); to train "
                "the student alone use `compress train`"
            )
        return problems
    if teacher.arch and not is_known_model(teacher.arch):
        problems.append(_unknown_arch("teacher.arch", teacher.arch))
    checkpoint_file = teacher.checkpoint is not None and teacher.checkpoint.is_file()
    if teacher.arch and teacher.checkpoint is None:
        problems.append(
            f"teacher.checkpoint: missing; teacher.arch {teacher.arch!r} alone is an untrained "
            "network with nothing to teach. Point checkpoint at the trained weights"
        )
    elif teacher.checkpoint is not None and teacher.checkpoint.is_dir():
        problems.append(
            f"teacher.checkpoint: {str(teacher.checkpoint)!r} is a folder; point it at the "
            "weights file in it"
        )
    elif teacher.checkpoint is not None and teacher.checkpoint.exists() and not checkpoint_file:
        problems.append(
            f"teacher.checkpoint: {str(teacher.checkpoint)!r} is not a regular file (a device "
            "or a pipe); point teacher.checkpoint at the weights file"
        )
    elif teacher.checkpoint is not None and not checkpoint_file:
        problems.append(
            f"teacher.checkpoint: file {str(teacher.checkpoint)!r}"
            f"{teacher.path_note('checkpoint')} does not exist; point teacher.checkpoint at "
            f"the weights file{_run_trained_elsewhere(teacher.checkpoint)}"
        )
    elif teacher.checkpoint is not None and teacher.checkpoint.suffix.lower() == ".onnx":
        problems.append(
            f"teacher.checkpoint: {str(teacher.checkpoint)!r} is an ONNX model; distillation "
            "needs the teacher in PyTorch (weights, TorchScript or torch.export), not ONNX"
        )
    if None not in (teacher.num_classes, num_classes) and teacher.num_classes != num_classes:
        problems.append(
            f"teacher.num_classes: the teacher has {teacher.num_classes} classes but data "
            f"set {recipe.data.name!r} has {num_classes}; a teacher must be trained on the "
            "same classes as the data"
        )
    return problems


def check_recipe(recipe: Recipe, source: str, *, needs_teacher: bool) -> None:
    problems = preflight_problems(recipe, needs_teacher=needs_teacher)
    if problems:
        raise UserError(*(f"{source}: {problem}" for problem in problems))


def check_models_build(recipe: Recipe, source: str) -> None:
    """Build the student, and the teacher with its weights, as training would; without data.

    Existence is not enough for `recipe validate` to call a recipe fine: student kwargs the
    architecture does not take, a checkpoint of another architecture or class count, a file
    that is not a checkpoint, an entrypoint that does not exist, or a feature-space triplet
    between layers of different widths would otherwise pass until the run starts. So would
    a student that cannot take the images' size (a ViT on 32-pixel images), or a teacher
    whose output is not one logit per class: both are run once on random images of the size
    training will see (an image folder's read from one image's header). Scoring the teacher
    needs the data, which is `compress teacher`'s job.
    """
    num_classes = dataset_num_classes(recipe.data)
    channels = dataset_channels(recipe.data)
    problems: list[str] = []
    causes: list[BaseException] = []  # user code's own errors, for --debug's traceback
    images = student = teacher = None
    try:
        images = torch.randn(2, channels, *dataset_image_size(recipe.data))
    except UserError as error:  # an unreadable image: reported, and the models not run
        problems.extend(f"{source}: {_in_section('data', line)}" for line in error.lines)
    try:
        arch = recipe.student.arch
        student = create_model(
            arch, num_classes, channels, **student_kwargs(arch, recipe.student.kwargs)
        )
    except UserError as error:
        hinted = with_channels_hint(error, recipe.data)
        problems.extend(f"{source}: student: {line}" for line in hinted.lines)
    if student is not None and images is not None:
        try:
            check_student_output(student, recipe.student.arch, images, num_classes)
        except UserError as error:
            problems.extend(f"{source}: {line}" for line in error.lines)
            causes += [error] if error.__cause__ is not None else []
    if recipe.teacher is not None:
        try:
            teacher = _built_teacher(recipe, num_classes, channels, images)
        except UserError as error:
            hinted = with_channels_hint(error, recipe.data)
            problems.extend(f"{source}: {_in_section('teacher', line)}" for line in hinted.lines)
            causes += [error] if error.__cause__ is not None else []
    if uses_feature_embedding(recipe.method) and student is not None and teacher is not None:
        try:
            check_feature_embedding(student, teacher, images)
        except UserError as error:
            problems.extend(f"{source}: {line}" for line in error.lines)
    if problems:
        raise UserError(*problems) from next(iter(causes), None)


def _built_teacher(
    recipe: Recipe, num_classes: int, channels: int, images: torch.Tensor | None
) -> torch.nn.Module:
    """The teacher as distillation will load it, and what distillation would refuse about it
    before training: logits of another shape (an entrypoint's own class count), weights that
    change from one build to the next (no checkpoint). `images` is None only when the data's
    problem is reported instead."""
    assert recipe.teacher is not None
    teacher = load_teacher(recipe.teacher, num_classes, channels)
    if recipe.teacher.checkpoint is None:
        fingerprint = weights_sha256(teacher)
        check_builds_the_same_weights(recipe.teacher, num_classes, channels, fingerprint)
    if images is not None:
        check_teacher_output(teacher.eval(), images, num_classes)
    return teacher


def _run_trained_elsewhere(checkpoint: Path) -> str:
    """A teacher run's student.pt missing, when a run of that name lies under the working
    folder: the two-step recipes (train a teacher, then distil from runs/NAME/student.pt)
    read the checkpoint from the recipe's folder, but a run is written under output.dir read
    from the folder `compress` ran in, so step 1 run from another folder wrote it there."""
    if checkpoint.name != "student.pt":
        return ""
    here = Path(checkpoint.parent.parent.name, checkpoint.parent.name, checkpoint.name)
    if not here.is_file() or here.resolve() == checkpoint.resolve():
        return ""
    return (
        f" (a run of that name is at {here.resolve()}: output.dir is read from the folder "
        "`compress` runs in, and it was trained from another folder than the recipe's path "
        f"assumes, {checkpoint.parent.parent.parent}; train it from there, or point "
        "teacher.checkpoint at that file)"
    )


def device_warnings(recipe: Recipe) -> list[str]:
    """train.device names a device this machine lacks, or train.amp a mixed precision for a
    GPU where `auto` finds none: fine for a recipe meant for another machine, which is why it
    is a warning, but a run here would stop on it."""
    try:
        amp_dtype(recipe.train.amp, select_device(recipe.train.device))
    except UserError as error:
        return [f"{line} (here; a run on this machine would stop)" for line in error.lines]
    return []


def setting_warnings(recipe: Recipe) -> list[str]:
    """Settings that are valid but probably not what the user meant; `recipe validate` and a
    run's start print them."""
    return [
        *fractions_for_percent(recipe),
        *_builder_beside_a_program(recipe),
        *_bank_that_cannot_pay(recipe),
    ]


def _bank_that_cannot_pay(recipe: Recipe) -> list[str]:
    """Bank mode that reuses almost nothing: only epoch 1 attacks (the bank is made and never
    used), epochs cut short draw another part of the training split each (a reuse epoch found
    1.8 banked samples per batch where the refresh had made 13.8), or a window as long as the
    attack's epochs makes the bank once."""
    method = recipe.method
    if not isinstance(method, BSSMethod | AMKDMethod) or method.bank_epochs == 1:
        return []
    bank_epochs, epochs = method.bank_epochs, recipe.train.epochs
    attacking = attacking_epochs(method.weights.beta_stop_fraction, epochs)
    said = f"method.bank_epochs {bank_epochs}"
    if attacking <= 1:
        return [
            f"{said}: only epoch 1 attacks (weights.beta_stop_fraction "
            f"{method.weights.beta_stop_fraction:g} of {epochs}), so the bank is made and "
            "never reused; remove bank_epochs"
        ]
    warnings = []
    if recipe.train.max_steps_per_epoch is not None:
        warnings.append(
            f"{said} with train.max_steps_per_epoch: each shortened epoch draws another part "
            "of the training split, so reuse epochs find few of their images in the bank and "
            "the boundary term all but stops"
        )
    if bank_epochs >= attacking:
        warnings.append(
            f"{said} spans all {attacking} epochs that attack (weights.beta_stop_fraction "
            f"{method.weights.beta_stop_fraction:g} of {epochs}): the bank is made in epoch 1 "
            "and never refreshed; a smaller bank_epochs refreshes it"
        )
    return warnings


def _builder_beside_a_program(recipe: Recipe) -> list[str]:
    """A TorchScript or .pt2 teacher is the whole model: an arch or entrypoint beside it is
    not used, and a user may believe the teacher is the model they named."""
    teacher = recipe.teacher
    if teacher is None or teacher.checkpoint is None or not teacher.checkpoint.is_file():
        return []
    file_format = teacher.format
    if file_format == "auto":
        file_format = detect_format(teacher.checkpoint)
    named = [
        f"teacher.{field} {value}"
        for field, value in (("arch", teacher.arch), ("entrypoint", teacher.entrypoint))
        if value
    ] + (["teacher.kwargs"] if teacher.kwargs else [])
    if file_format not in ("torchscript", "export") or not named:
        return []
    program = "a TorchScript" if file_format == "torchscript" else "a torch.export"
    return [
        f"{' and '.join(named)} {'are' if len(named) > 1 else 'is'} not used: "
        f"{teacher.checkpoint} is {program} program, which holds its own architecture"
    ]


def unused_settings(recipe: Recipe, *, distill: bool) -> list[str]:
    """Warnings for a recipe whose teacher or method the chosen command will not use.

    Not errors: `train` on a distillation recipe is how its CE baseline is made, and
    `distill` with `ce` scores the teacher for the report. But done by mistake, either runs
    for a long time and trains something else than the user thinks.
    """
    if not distill:
        unused = [
            *([f"method {recipe.method.name!r}"] if recipe.method.name != "ce" else []),
            *(["teacher"] if recipe.teacher is not None else []),
        ]
        if unused:
            many = len(unused) > 1
            return [
                "`compress train` trains with cross-entropy alone: the recipe's "
                f"{' and '.join(unused)} {'are' if many else 'is'} not used "
                f"(`compress distill` uses {'them' if many else 'it'})"
            ]
    if distill and recipe.method.name == "ce":
        return [
            "method 'ce' does not learn from the teacher (it is only scored for the report); "
            "set method.name to kd or amkd to distil"
        ]
    return []
