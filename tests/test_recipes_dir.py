"""Every ready recipe in recipes/ validates once its inputs exist (here: placeholder files
where a user would have data and teachers). The quickstart itself runs in test_quickstart.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from compressor.models import create_model
from tests.cli_helpers import run_cli
from tests.data.image_files import save_image

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


# The teachers the recipes name, as untrained weights of the right architecture, class count
# and channels: `recipe validate` loads them. (file, architecture, classes, channels)
TEACHER_FILES = [
    ("resnet56-4bfd9763.th", "resnet56", 10, 3),
    ("c100.pt", "resnet56", 100, 3),
    ("tiny.pt", "resnet18", 200, 3),
    ("mine.pt", "resnet8", 2, 3),  # my_project.models:build_teacher below
]
USER_MODELS = """
from compressor.models import create_model


def build_teacher(num_classes, in_channels):
    return create_model("resnet8", num_classes, in_channels)
"""


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("teachers")
    for name, arch, classes, channels in TEACHER_FILES:
        torch.save(
            {"state_dict": create_model(arch, classes, channels).state_dict()}, folder / name
        )
    return folder


@pytest.fixture
def inputs(tmp_path: Path, teachers: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of recipes/ beside placeholder data sets, teacher weights and the user's model
    code that custom-imagefolder.yaml names."""
    shutil.copytree(RECIPES, tmp_path / "recipes")
    data = tmp_path / "data"
    for folder, files in {
        "cifar-10-batches-py": [
            *(f"data_batch_{i}" for i in range(1, 6)),
            "test_batch",
            "batches.meta",
        ],
        "cifar-100-python": ["train", "test", "meta"],
    }.items():
        (data / folder).mkdir(parents=True)
        for name in files:
            (data / folder / name).write_bytes(b"")
    tiny = data / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(200)]
    (tiny / "wnids.txt").parent.mkdir(parents=True)
    (tiny / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))
    for wnid in wnids:  # validate lists each class's first image and the held-out listing
        (tiny / "train" / wnid / "images").mkdir(parents=True)
        (tiny / "train" / wnid / "images" / f"{wnid}_0.JPEG").write_bytes(b"")
    (tiny / "val" / "images").mkdir(parents=True)
    (tiny / "val" / "images" / "val_0.JPEG").write_bytes(b"")
    (tiny / "val" / "val_annotations.txt").write_text(f"val_0.JPEG\t{wnids[0]}\t0\t0\t63\t63\n")
    for label in ("cat", "dog"):  # validate refuses an empty class folder, as loading does
        for split in ("train", "val"):  # and a missing held-out split
            save_image(tmp_path / "my-data" / split / label / "a.png")
    (tmp_path / "my_project").mkdir()
    (tmp_path / "my_project" / "__init__.py").write_text("")
    (tmp_path / "my_project" / "models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    runs = tmp_path / "runs" / "quickstart-teacher"
    runs.mkdir(parents=True)
    torch.save({"state_dict": create_model("resnet20", 10, 1).state_dict()}, runs / "student.pt")
    for variable, value in {
        "COMPRESSOR_DATA_ROOT": data,
        "COMPRESSOR_TEACHERS": teachers,
        "CIFAR100_TEACHER": teachers / "c100.pt",
        "TINY_IMAGENET_TEACHER": teachers / "tiny.pt",
        "MY_TEACHER": teachers / "mine.pt",
        "MY_DATA": tmp_path / "my-data",
    }.items():
        monkeypatch.setenv(variable, str(value))
    return tmp_path / "recipes"


def test_the_ready_recipes_are_all_there() -> None:
    names = {path.stem for path in RECIPES.glob("*.yaml")}
    assert {
        "quickstart",
        "quickstart-teacher",
        "cifar10-resnet56-resnet8",
        "cifar10-resnet56-mobilenetv2",
        "cifar100-teacher",
        "cifar100-resnet56-resnet20",
        "tiny-imagenet-resnet18-mobilenetv2",
        "custom-imagefolder",
    } <= names


@pytest.mark.parametrize("name", sorted(path.name for path in RECIPES.glob("*.yaml")))
def test_recipe_validates(inputs: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    result = run_cli(capsys, "recipe", "validate", str(inputs / name))
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout
