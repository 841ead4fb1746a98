"""Flag checks the benchmark scripts share: counts that must be positive, and the real data
and teacher they read, refused as one argparse line (exit 2) before anything runs, instead of
a traceback from a worker, or a division by zero, after the other measurements."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from torch import nn

from compressor.errors import UserError
from compressor.models.checkpoint import extract_state_dict, load_weights, read_checkpoint
from compressor.recipe import DATA_ROOT_ENV

# The teachers in ../shared/teachers, by zoo name: the default checkpoint for --teacher.
TEACHER_FILES = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}
TEACHERS_ENV = "COMPRESSOR_TEACHERS"
_SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared beside the clone


def add_data_root(parser: argparse.ArgumentParser) -> None:
    """--data-root, the CIFAR-10 folder: $COMPRESSOR_DATA_ROOT unless given, else
    ../shared/data (checked by `check_inputs`)."""
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path(os.environ.get(DATA_ROOT_ENV) or _SHARED / "data"),
        help="holds cifar-10-batches-py (default: $COMPRESSOR_DATA_ROOT, else ../shared/data)",
    )


def default_teacher(name: str) -> Path:
    """The shared teacher `name`'s file: in $COMPRESSOR_TEACHERS, else ../shared/teachers."""
    return Path(os.environ.get(TEACHERS_ENV) or _SHARED / "teachers") / TEACHER_FILES[name]


def count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum` (1 for steps and repeats, 0 for
    warm-up steps, 2 for a batch, which batch norm needs) and, where given, at most `maximum`
    (a subset no larger than the split it is taken from)."""

    def parse(text: str) -> int:
        value = int(text)  # not a number: argparse says "invalid count value"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value}: must be at most {maximum:,}")
        return value

    parse.__name__ = "count"
    return parse


def load_student_checkpoint(student: nn.Module, path: Path, arch: str, num_classes: int) -> None:
    """--student-checkpoint into `student`: a run's student.pt (its arch must be `arch`) or a
    state dict, read as a teacher's checkpoint is, so weights of another model are one line
    (a UserError) naming what differs, not load_state_dict's traceback."""
    record = read_checkpoint(path)
    recorded = record.get("arch") if isinstance(record, dict) else None
    if recorded is not None and recorded != arch:
        raise UserError(f"--student-checkpoint {path} holds a {recorded} student, not {arch}")
    weights = extract_state_dict(record, str(path))
    load_weights(
        student,
        weights,
        source=str(path),
        model_name=arch,
        data_classes=num_classes,
        arch_field="--student",
    )


def check_inputs(
    parser: argparse.ArgumentParser, data_root: Path, teacher: Path, student: Path | None = None
) -> None:
    """The CIFAR-10 folder and the teacher file must be there (../shared, or the flags), and
    the student checkpoint where one is given."""
    if student is not None and not student.is_file():
        parser.error(
            f"--student-checkpoint {student}: no such file; give a run's student.pt or a "
            "state dict of the student's architecture"
        )
    if not (data_root / "cifar-10-batches-py").is_dir():
        parser.error(
            f"--data-root {data_root}: no cifar-10-batches-py folder in it; give the folder "
            f"that holds CIFAR-10's python batches (or set ${DATA_ROOT_ENV}; default: "
            "../shared/data beside the clone)"
        )
    if not teacher.is_file():
        parser.error(
            f"--teacher-checkpoint {teacher}: no such file; give the teacher's weights (or "
            f"set ${TEACHERS_ENV} to the folder of the shared teachers; default: "
            "../shared/teachers beside the clone)"
        )
