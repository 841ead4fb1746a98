"""Real run directories for the export tests, made once per session with the real `compress`
commands on the embedded digits data: a CE-trained ResNet-20 (a run without a teacher, and
the teacher checkpoint) and a ResNet-8 distilled from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.export.helpers import QUICK, invoke, write_recipe


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-runs")


@pytest.fixture(scope="session")
def teacher_run(workdir: Path) -> Path:
    """`compress train`: a ResNet-20 on digits, 2 epochs; a run with no teacher of its own."""
    recipe = write_recipe(
        workdir / "teacher.yaml",
        {
            "student": {"arch": "resnet20"},
            "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    invoke("train", str(recipe))
    return workdir / "teacher"


@pytest.fixture(scope="session")
def distilled_run(workdir: Path, teacher_run: Path) -> Path:
    """`compress distill`: ResNet-20 teacher → ResNet-8 student with KD, 2 epochs."""
    recipe = write_recipe(
        workdir / "distilled.yaml",
        {
            "teacher": {"arch": "resnet20", "checkpoint": str(teacher_run / "student.pt")},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    invoke("distill", str(recipe))
    return workdir / "distilled"


@pytest.fixture(scope="session")
def exported_run(distilled_run: Path) -> Path:
    """`compress export RUN --fp16`: student (fp32 + fp16) and teacher, ONNX Runtime."""
    invoke("export", str(distilled_run), "--fp16", *QUICK)
    return distilled_run


@pytest.fixture(scope="session")
def int8_run(workdir: Path, distilled_run: Path) -> Path:
    """`compress export RUN --int8` on a copy of the distilled run (the fp32-only reports of
    `exported_run` stay as they are): student and teacher, fp32 and INT8, ONNX Runtime."""
    run = workdir / "int8"
    shutil.copytree(distilled_run, run, ignore=shutil.ignore_patterns("export"))
    invoke("export", str(run), "--int8", "--calibration-images", "256", *QUICK)
    return run
