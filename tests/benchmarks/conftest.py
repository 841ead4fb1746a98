"""The benchmark scripts import each other as top-level modules (`from docs_section import
...`), as they do when run as `python benchmarks/quality.py`; the tests import them the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture
def toy_timing_args(shared_dir: Path, cifar10_root: Path) -> list[str]:
    """The timing scripts' real data and ResNet-56 teacher, at a budget of a few steps."""
    return [
        "--data-root", str(cifar10_root),
        "--teacher-checkpoint", str(shared_dir / "teachers" / "resnet56-4bfd9763.th"),
        "--steps", "2", "--warmup", "1", "--repeats", "1",
        "--batch-size", "32", "--num-threads", "1",
    ]  # fmt: skip
