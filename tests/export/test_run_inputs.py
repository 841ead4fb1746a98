"""What `compress export` reads: only the test split unless INT8 needs calibration images,
so exporting a model trained on a large image folder does not decode its training photos."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from tests.cli_helpers import run_cli
from tests.data.image_files import damage_training_images, make_imagefolder
from tests.export.helpers import (
    QUICK,
    copy_run,
    invoke,
    one_error_line,
    report_of,
    write_recipe,
)


def _trained_on_photos(tmp_path: Path) -> Path:
    """`compress train` on an image folder of ants and bees into tmp_path/runs/photos; the
    folder."""
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
    return root


def test_export_reads_training_images_only_for_int8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _trained_on_photos(tmp_path)
    run = tmp_path / "runs" / "photos"
    damage_training_images(root)

    assert run_cli(capsys, "export", str(run), *QUICK).code == 0
    assert report_of(run)["eval_samples"] == 2

    error = one_error_line(run_cli(capsys, "export", str(run), "--int8", *QUICK))
    assert "cannot decode 3 images" in error


def test_export_refuses_test_images_changed_since_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image removed from val/, or moved to another class: the export scored the student
    on other images than its report, and the gate table showed two accuracies of one
    student.pt side by side without a word."""
    root = _trained_on_photos(tmp_path)
    run = tmp_path / "runs" / "photos"
    image = root / "val" / "ant" / "c.png"
    for place in (tmp_path / "c.png", root / "val" / "bee" / "from-ant.png"):
        image.rename(place)
        error = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
        assert error == (
            f"error: {run}: the recipe's test images (imagefolder in {root}) are not the ones "
            "the run was scored on (added, removed, renamed, moved to another class or "
            "replaced since): the export would score the student on other images than its "
            "report; give the data the run was trained on"
        )
        place.rename(image)
    assert not (run / "export").exists()
    assert run_cli(capsys, "export", str(run), *QUICK).code == 0


def test_export_refuses_data_whose_classes_were_renamed_since_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Renamed `ant` → `cow`, the folder keeps its class count, and the export scored the
    student against shifted labels (0 % top-1) and the gate passed it."""
    root = _trained_on_photos(tmp_path)
    for split in ("train", "val"):
        (root / split / "ant").rename(root / split / "cow")
    run = tmp_path / "runs" / "photos"
    error = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
    assert error == (
        f"error: {run}: the recipe's data (imagefolder) names its classes otherwise than "
        "student.pt (class 0 'ant' is now 'bee', class 1 'bee' is now 'cow'): the labels would "
        "be scored against the wrong names; give the data the student was trained on (its "
        "class folders as they were)"
    )
    assert not (run / "export").exists()


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("arch", 5, "arch is not a name"),
        ("image_shape", [], "image_shape is not [channels, height, width]"),
        ("num_classes", True, "num_classes is not a positive whole number"),
        ("mean", [0.5, 0.5], "mean and std are not one number per channel"),
        ("kwargs", [1], "kwargs is not a mapping"),
    ],
)
def test_a_student_record_with_fields_of_the_wrong_kind_is_one_line(
    distilled_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    problem: str,
) -> None:
    """A run from before the manifest kept student.pt's hash is trusted to hold what the
    engine writes: a field of another kind crashed the export (IndexError, TypeError)."""
    run = copy_run(distilled_run, tmp_path / "edited", "completed")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.pop("student_sha256", None)
    (run / "manifest.json").write_text(json.dumps(manifest))
    record = torch.load(run / "student.pt", weights_only=True)
    record[field] = value
    torch.save(record, run / "student.pt")
    line = one_error_line(run_cli(capsys, "export", str(run), "--no-teacher", *QUICK))
    assert f"student.pt: not a student record written by compress train/distill ({problem})" in (
        line
    )


def test_a_student_whose_logits_are_nan_is_refused_as_broken_not_as_a_failed_export(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every ONNX file of a model that gives NaN logits in PyTorch fails parity: the export
    names the trained model as broken instead, before writing anything."""
    run = copy_run(distilled_run, tmp_path / "broken", "completed")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.pop("student_sha256", None)
    (run / "manifest.json").write_text(json.dumps(manifest))
    record = torch.load(run / "student.pt", weights_only=True)
    bias = next(name for name in record["state_dict"] if name.endswith("linear.bias"))
    record["state_dict"][bias][0] = float("nan")
    torch.save(record, run / "student.pt")
    line = one_error_line(run_cli(capsys, "export", str(run), "--no-teacher", *QUICK))
    assert "student: the PyTorch model (" in line
    assert "gives NaN or infinite logits on " in line
    assert "the trained model is broken, not its export" in line
    assert [p.name for p in (run / "export").iterdir()] == [".lock"]  # no file, no staging


def test_a_grayscale_image_folder_is_trained_distilled_and_exported_on_one_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """data.channels 1: the teacher a run trains on the folder, the student distilled from it
    and the ONNX files all take one-channel images, and the exported student matches."""
    root = make_imagefolder(tmp_path / "scans", classes=("benign", "malignant"))
    data = {"name": "imagefolder", "root": str(root), "channels": 1}
    train = {"epochs": 1, "batch_size": 4, "device": "cpu"}
    runs = tmp_path / "runs"
    output = {"dir": str(runs)}
    teacher = write_recipe(
        tmp_path / "teacher.yaml",
        {"student": {"arch": "resnet8"}, "data": data, "train": train, "output": output},
    )
    invoke("train", str(teacher))
    distilled = write_recipe(
        tmp_path / "student.yaml",
        {
            "teacher": {"arch": "resnet8", "checkpoint": str(runs / "teacher" / "student.pt")},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "data": data,
            "train": train,
            "output": output,
        },
    )
    result = run_cli(capsys, "distill", str(distilled))
    assert result.code == 0, result.stderr
    assert "was trained on" not in result.stderr  # the teacher's recorded inputs: the data's
    run = runs / "student"
    assert run_cli(capsys, "export", str(run), *QUICK).code == 0
    for model in ("student", "teacher"):
        graph = onnx.load(run / "export" / f"{model}.onnx").graph
        assert graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1
    rows = report_of(run)["results"]
    assert all(row["parity"]["passed"] for row in rows if row["backend"] == "onnxruntime")
