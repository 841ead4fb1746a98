"""Pre-flight checks: problems a schema cannot see (files, architectures, class counts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.models import create_model
from compressor.preflight import unused_settings
from compressor.recipe import parse_recipe
from tests.cli_helpers import run_cli
from tests.data.image_files import make_imagefolder
from tests.recipe.helpers import merged, write_recipe

BAD_SETUPS = [
    (
        "unknown student architecture",
        merged(student={"arch": "resnet21"}),
        ["student.arch", "'resnet21'", "resnet20", "torchvision"],
    ),
    (
        "unknown teacher architecture",
        merged(teacher={"arch": "resnet57", "checkpoint": "t.pt"}, method={"name": "kd"}),
        ["teacher.arch", "'resnet57'"],
    ),
    (
        "teacher without weights",
        merged(teacher={"arch": "resnet20"}, method={"name": "kd"}),
        ["teacher.checkpoint", "untrained"],
    ),
    (
        "missing teacher checkpoint",
        merged(teacher={"arch": "resnet20", "checkpoint": "missing.th"}, method={"name": "kd"}),
        ["teacher.checkpoint", "missing.th", "does not exist"],
    ),
    (
        "teacher/data class-count mismatch",
        merged(
            teacher={"arch": "resnet20", "checkpoint": "t.pt", "num_classes": 100},
            method={"name": "kd"},
        ),
        ["teacher.num_classes", "100 classes", "has 10"],
    ),
    (
        "distillation method without a teacher",
        merged(method={"name": "amkd"}),
        ["teacher", "'amkd'", "no teacher"],
    ),
    (
        "data root that does not exist",
        merged(data={"name": "cifar10", "root": "/definitely/not/here"}),
        ["data", "/definitely/not/here"],
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "expected"), BAD_SETUPS, ids=[case for case, _, _ in BAD_SETUPS]
)
def test_bad_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, data: dict, expected: list[str]
) -> None:
    path = write_recipe(tmp_path, data)
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr, (case, fragment, result.stderr)


def test_good_recipe_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, merged())))
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout


def test_distilling_without_a_teacher_points_to_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "distill", str(write_recipe(tmp_path, merged())))
    assert result.code == 2
    assert "compress train" in result.stderr


def _teacher_recipe(tmp_path: Path, teacher: dict) -> Path:
    return write_recipe(tmp_path, merged(teacher=teacher, method={"name": "kd"}))


def _weights(tmp_path: Path, arch: str) -> str:
    path = tmp_path / f"{arch}.pt"
    torch.save(create_model(arch, 10, 1).state_dict(), path)
    return str(path)


def test_validate_loads_the_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _teacher_recipe(
        tmp_path, {"arch": "resnet20", "checkpoint": _weights(tmp_path, "resnet20")}
    )
    result = run_cli(capsys, "recipe", "validate", str(good))
    assert result.code == 0, result.stderr
    assert "teacher loads" in result.stdout


UNLOADABLE_TEACHERS = [
    (
        "another architecture's weights",
        lambda t: {"arch": "resnet20", "checkpoint": _weights(t, "resnet56")},
        "resnet56",
    ),
    (
        "a text file as checkpoint",
        lambda t: {"arch": "resnet20", "checkpoint": str(_text(t))},
        "cannot read this file",
    ),
    (
        "an entrypoint that does not exist",
        lambda t: {"entrypoint": "json:build_teacher"},
        "build_teacher",
    ),
]


@pytest.mark.parametrize(
    ("case", "teacher", "expected"),
    UNLOADABLE_TEACHERS,
    ids=[case for case, _, _ in UNLOADABLE_TEACHERS],
)
def test_validate_refuses_a_teacher_that_would_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, teacher, expected: str
) -> None:
    result = run_cli(
        capsys, "recipe", "validate", str(_teacher_recipe(tmp_path, teacher(tmp_path)))
    )
    assert result.code == 2, (case, result.stdout)
    assert "teacher:" in result.stderr and expected in result.stderr, (case, result.stderr)
    assert "Traceback" not in result.stderr


def test_validate_builds_the_student_and_checks_feature_widths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What training would refuse in its first seconds, validate says without the data."""
    teacher = {"arch": "resnet20", "checkpoint": _weights(tmp_path, "resnet20")}
    typo = merged(teacher=teacher, student={"arch": "mobilenetv2", "kwargs": {"width": 2}})
    features = merged(
        teacher=teacher,
        student={"arch": "mobilenetv2"},
        method={"name": "amkd", "embedding": "features"},
    )
    for recipe, expected in (
        (typo, "student: model 'mobilenetv2': got an unexpected keyword argument 'width'"),
        (
            features,
            "method.embedding: features compares penultimate features, but the "
            "teacher has 64 and the student 1280",
        ),
    ):
        result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, recipe)))
        assert result.code == 2, result.stdout
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_validate_runs_the_student_on_images_of_the_data_sets_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ViT needs 224-pixel images: known from data.image_size without decoding a file.
    A folder of photos without image_size has no one size, so that check waits for the run."""
    root = make_imagefolder(tmp_path / "photos")
    data = {"name": "imagefolder", "root": str(root)}
    sized = merged(student={"arch": "vit_b_16"}, data={**data, "image_size": 32})
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, sized)))
    assert result.code == 2, result.stdout
    assert "student vit_b_16 fails on a batch of shape [2, 3, 32, 32]" in result.stderr
    unsized = merged(student={"arch": "vit_b_16"}, data=data)
    assert run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, unsized))).code == 0


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    return path


def test_a_teacher_or_method_the_command_will_not_use_is_warned_about() -> None:
    teacher = {"arch": "resnet20", "checkpoint": "t.pt"}
    distillation = parse_recipe(merged(teacher=teacher, method={"name": "amkd"}))
    assert (
        "method 'amkd' and teacher are not used" in unused_settings(distillation, distill=False)[0]
    )
    scored_teacher = parse_recipe(merged(teacher=teacher))
    assert "the recipe's teacher is not used" in unused_settings(scored_teacher, distill=False)[0]
    assert unused_settings(distillation, distill=True) == []
    teacher_training = parse_recipe(merged())
    assert unused_settings(teacher_training, distill=False) == []
    no_method = parse_recipe(merged(teacher=teacher))
    assert "set method.name to kd or amkd" in unused_settings(no_method, distill=True)[0]


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [("weights", "is a folder; point it at the weights file"), ("teacher.onnx", "ONNX model")],
)
def test_a_teacher_checkpoint_that_is_a_folder_or_onnx_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: str, expected: str
) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "teacher.onnx").write_bytes(b"\x08\x07")
    recipe = _teacher_recipe(tmp_path, {"arch": "resnet20", "checkpoint": checkpoint})
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2
    assert "teacher.checkpoint" in result.stderr and expected in result.stderr


_BUILDERS = """
import torch


def _linear(classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))


def seven_classes():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _linear(7)


def unseeded():
    return _linear(10)
"""


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        ("seven_classes", "the teacher returns [2, 7] for a batch of 2; expected logits of shape"),
        ("unseeded", "builds other weights on every call (two calls differ)"),
    ],
)
def test_validate_refuses_a_teacher_distillation_would_refuse_before_training(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    builder: str,
    expected: str,
) -> None:
    (tmp_path / "builders.py").write_text(_BUILDERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = _teacher_recipe(tmp_path, {"entrypoint": f"builders:{builder}"})
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.startswith(f"error: {recipe}: teacher: ")
    assert expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_device_this_machine_lacks_is_a_warning_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe may be for the GPU box; a run here would stop on it, so validate says so."""
    recipe = write_recipe(tmp_path, merged(train={"epochs": 2, "device": "cuda"}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout
    assert result.stderr.strip() == (
        f"warning: {recipe}: train.device is 'cuda' but no CUDA GPU is visible; use 'auto' or "
        "'cpu' (here; a run on this machine would stop)"
    )
