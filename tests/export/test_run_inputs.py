"""What `compress export` reads: only the test split unless INT8 needs calibration images,
so exporting a model trained on a large image folder does not decode its training photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.data.image_files import damage_training_images, make_imagefolder
from tests.export.helpers import QUICK, invoke, one_error_line, report_of, write_recipe


def test_export_reads_training_images_only_for_int8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_imagefolder(tmp_path / "photos", classes=("ant", "bee"))
    recipe = write_recipe(
        tmp_path / "photos.yaml",
        {
            "student": {"arch": "resnet8"},
            "data": {"name": "imagefolder", "root": str(root)},
            "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
            "output": {"dir": str(tmp_path / "runs")},
        },
    )
    invoke("train", str(recipe))
    run = tmp_path / "runs" / "photos"
    damage_training_images(root)

    assert run_cli(capsys, "export", str(run), *QUICK).code == 0
    assert report_of(run)["eval_samples"] == 2

    error = one_error_line(run_cli(capsys, "export", str(run), "--int8", *QUICK))
    assert "cannot decode 3 images" in error
