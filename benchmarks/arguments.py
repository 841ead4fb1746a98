"""Flag checks the benchmark scripts share: counts that must be positive, and the real data
and teacher they read, refused as one argparse line (exit 2) before anything runs, instead of
a traceback from a worker, or a division by zero, after the other measurements."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

# The teachers in ../shared/teachers, by zoo name: the default checkpoint for --teacher.
TEACHER_FILES = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum` (1 for steps and repeats, 0 for
    warm-up steps)."""

    def parse(text: str) -> int:
        value = int(text)  # not a number: argparse says "invalid count value"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {minimum}")
        return value

    parse.__name__ = "count"
    return parse


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
            "that holds CIFAR-10's python batches (../shared/data beside the clone)"
        )
    if not teacher.is_file():
        parser.error(
            f"--teacher-checkpoint {teacher}: no such file; give the teacher's weights "
            "(../shared/teachers beside the clone)"
        )
