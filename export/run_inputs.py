"""What `compress export` reads from a run directory: the recipe, student.pt, the teacher the
recipe names, and the evaluation set. Every problem is found here, before any work starts.

student.pt (written by the engine) holds the architecture, its kwargs, class names, input
shape, mean/std and the weights; it is read with `weights_only=True`, so a student.pt cannot
run code when it is exported. The teacher is built as the run's recipe.yaml says, which may
mean running code (an entrypoint, a file the recipe trusts): a run directory from someone
else is exported with --no-teacher unless its recipe has been read first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.data import Dataset, ImageSet, class_changes, load_dataset, load_test_split
from compressor.data.sets import image_text
from compressor.errors import UserError
from compressor.io import file_sha256
from compressor.models import (
    create_model,
    load_teacher,
    load_weights,
    read_checkpoint,
    student_kwargs,
)
from compressor.models.fingerprint import weights_sha256
from compressor.recipe import Recipe
from compressor.rundir import (
    RunDir,
    check_same_teacher,
    manifest_record,
    read_completed_run,
    run_command,
    set_aside_file_note,
)
from export.validate import EvalSet

_STUDENT_KEYS = ("arch", "num_classes", "image_shape", "classes", "mean", "std", "state_dict")


@dataclass(frozen=True)
class ModelFile:
    """A model file as the export read it: the report names what was exported, not what the
    path holds by the time a row is written (a teacher run trained again meanwhile)."""

    path: Path
    size_bytes: int
    sha256: str


def model_file(path: Path) -> ModelFile:
    try:
        return ModelFile(path, path.stat().st_size, file_sha256(path))
    except OSError as error:
        raise UserError(
            f"{path}: cannot be read ({error.strerror}): moved or removed while the export "
            "read it; export again"
        ) from None


@dataclass
class RunInputs:
    run: RunDir
    recipe: Recipe
    recipe_sha256: str
    student: nn.Module
    record: dict[str, Any]  # student.pt without the weights: arch, classes, mean, std, ...
    manifest: dict[str, Any]  # manifest.json as read: check_run_unchanged compares it
    student_file: ModelFile

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.record["image_shape"])

    @property
    def classes(self) -> list[str]:
        return list(self.record["classes"])


def read_run(path: Path | str) -> RunInputs:
    """Check the run directory and rebuild its student; UserError names what is missing."""
    run = RunDir(Path(path))
    recipe, manifest = read_completed_run(run)
    student_file = model_file(run.student)
    command = run_command(run, recipe)
    record = read_checkpoint(
        run.student,
        if_pickled="compress writes student.pt with tensors and plain values only, so this "
        f"one was replaced: train the run again with `{command} --overwrite`",
    )
    if not isinstance(record, dict) or any(key not in record for key in _STUDENT_KEYS):
        raise UserError(
            f"{run.student}: not a student record written by compress train/distill "
            f"(it needs {', '.join(_STUDENT_KEYS)})"
        )
    problem = _record_problem(record)
    if problem is not None:  # edited, or made by hand: the run's own hash may be absent
        raise UserError(
            f"{run.student}: not a student record written by compress train/distill "
            f"({problem}); train the run again with `{command} --overwrite`"
        )
    with torch.random.fork_rng(devices=[]):  # its weights are the record's: no draw
        student = create_model(
            record["arch"],
            record["num_classes"],
            record["image_shape"][0],
            **student_kwargs(record["arch"], record.get("kwargs", {})),
        )
    load_weights(
        student,
        record["state_dict"],
        source=str(run.student),
        model_name=record["arch"],
        data_classes=record["num_classes"],
        arch_field="student.arch",
    )
    student.eval()
    info = {key: value for key, value in record.items() if key != "state_dict"}
    # The hash the run recorded when it started: a recomputed one would change whenever a
    # later compressor adds a recipe field with a default, orphaning older runs.
    return RunInputs(
        run, recipe, str(manifest["recipe_sha256"]), student, info, manifest, student_file
    )


def check_run_unchanged(inputs: RunInputs) -> None:
    """Called holding export/.lock, which an --overwrite takes to set the run aside: the run is
    still the one read, so the export about to be written is of what its folder holds.

    The run is read before the lock is taken, so that refused input leaves no export/ behind.
    An --overwrite in between would move the read run away unhindered, and its export land in
    the new run's export/, where the gate would take it for the new run's. A run resumed in
    between rewrites its manifest too.
    """
    run = inputs.run
    student = inputs.student_file
    if manifest_record(run) == inputs.manifest and _sha256_or_none(run.student) == student.sha256:
        return
    raise UserError(
        f"{run.root}: the run changed while the export read it (trained again with "
        "--overwrite, or resumed); nothing was exported: export it again once it completes"
    )


def _sha256_or_none(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def _record_problem(record: dict[str, Any]) -> str | None:
    """Which field of student.pt is not of the kind the engine writes, or None."""

    def counts(value: object) -> bool:
        return type(value) is int and value > 0

    def numbers(value: object, length: int) -> bool:
        items = value if isinstance(value, list | tuple) else ()
        return len(items) == length and all(type(v) in (int, float) for v in items)

    shape = record["image_shape"]
    channels = shape[0] if isinstance(shape, list | tuple) and shape else 0
    checks = {
        "arch is not a name": isinstance(record["arch"], str),
        "num_classes is not a positive whole number": counts(record["num_classes"]),
        "image_shape is not [channels, height, width]": isinstance(shape, list | tuple)
        and len(shape) == 3
        and all(counts(v) for v in shape),
        "classes is not one name per class": isinstance(record["classes"], list | tuple)
        and len(record["classes"]) == record["num_classes"],
        "mean and std are not one number per channel": numbers(record["mean"], channels)
        and numbers(record["std"], channels),
        "kwargs is not a mapping": isinstance(record.get("kwargs", {}), dict),
        "state_dict is not a mapping of weights": isinstance(record["state_dict"], dict),
    }
    return next((problem for problem, holds in checks.items() if not holds), None)


def read_teacher(inputs: RunInputs) -> nn.Module:
    """The recipe's teacher, loaded the way distillation loaded it (CPU, frozen, eval)."""
    teacher = inputs.recipe.teacher
    if teacher is None:
        raise UserError(
            f"{inputs.run.recipe}: the run has no teacher (trained with `compress train`); "
            "drop --teacher"
        )
    try:
        model = load_teacher(teacher, inputs.record["num_classes"], inputs.image_shape[0])
    except UserError as error:
        # The path alone does not say it came from the run's recipe, nor that the student's
        # export does not need it.
        moved = set_aside_file_note(teacher.checkpoint) if teacher.checkpoint else ""
        raise UserError(
            f"the run's teacher (teacher: in {inputs.run.recipe}) cannot be loaded: "
            f"{error.lines[0]}; fix teacher: there, or export the student alone with "
            f"--no-teacher{moved}",
            *error.lines[1:],
        ) from None
    # A teacher retrained in place since: its rows would compare the student with a model it
    # was not distilled from.
    check_same_teacher(
        inputs.run,
        inputs.recipe,
        weights_sha256(model),
        fix=f"point teacher.checkpoint in {inputs.run.recipe} at that teacher, or export the "
        "student alone with --no-teacher",
    )
    return model


def read_splits(inputs: RunInputs, with_train: bool) -> tuple[EvalSet | None, EvalSet]:
    """The recipe's test split and, `with_train`, its training split (None otherwise),
    normalised with the mean/std the student was trained with: the test split is what every
    backend is scored on, the training split is where INT8 calibration images come from, so
    an export without INT8 does not read it."""
    data = load_dataset(inputs.recipe.data) if with_train else load_test_split(inputs.recipe.data)
    shape = tuple(data.image_shape)
    if shape != inputs.image_shape or data.num_classes != inputs.record["num_classes"]:
        raise UserError(
            f"{inputs.run.root}: the recipe's data ({data.name}, {data.num_classes} classes of "
            f"{image_text(shape)} images) no longer matches student.pt "
            f"({inputs.record['num_classes']} classes of {image_text(inputs.image_shape)} images)"
        )
    renamed = class_changes(inputs.classes, data.classes)
    if renamed:
        raise UserError(
            f"{inputs.run.root}: the recipe's data ({data.name}) names its classes otherwise "
            f"than student.pt ({renamed}): the labels would be scored against the wrong "
            "names; give the data the student was trained on (its class folders as they were)"
        )
    # What the class names miss.
    recorded = inputs.manifest.get("data_digests")
    if isinstance(recorded, dict) and recorded.get("test") not in (None, data.test.files_digest):
        raise UserError(
            f"{inputs.run.root}: the recipe's test images ({data.name} in "
            f"{inputs.recipe.data.root}) are not the ones the run was scored on (added, "
            "removed, renamed, moved to another class or replaced since): the export would "
            "score the student on other images than its report; give the data the run was "
            "trained on"
        )

    def normalised_like_student(split: ImageSet) -> EvalSet:
        return EvalSet(
            name=data.name,
            images=split.images.numpy(),
            labels=split.labels.numpy(),
            mean=tuple(inputs.record["mean"]),
            std=tuple(inputs.record["std"]),
        )

    test = normalised_like_student(data.test)
    if not with_train:
        return None, test
    assert isinstance(data, Dataset)  # load_dataset's
    return normalised_like_student(data.train), test
