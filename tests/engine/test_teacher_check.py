"""The real pretrained teachers in ../shared, loaded through a recipe, score their published
accuracy on the real CIFAR-10 test set — the end-to-end proof of the loader and the zoo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.engine.teacher import check_teacher
from compressor.errors import UserError
from compressor.models import create_model
from compressor.recipe import parse_recipe
from tests.data.image_files import damage_training_images, make_imagefolder


@pytest.mark.parametrize(
    ("arch", "checkpoint", "published"),
    [("resnet20", "resnet20-12fca82f.th", 91.73), ("resnet56", "resnet56-4bfd9763.th", 93.39)],
)
def test_shared_teacher_scores_its_published_accuracy(
    shared_dir: Path, arch: str, checkpoint: str, published: float
) -> None:
    recipe = parse_recipe(
        {
            "teacher": {
                "arch": arch,
                "checkpoint": str(shared_dir / "teachers" / checkpoint),
                "min_accuracy": 90,
            },
            "student": {"arch": "resnet8"},
            "data": {"name": "cifar10", "root": str(shared_dir / "data")},
            "method": {"name": "kd"},
            "train": {"device": "cpu", "eval_batch_size": 500},
        }
    )
    summary, count = check_teacher(recipe, "test")
    assert count == 10_000
    assert summary.accuracy == pytest.approx(published, abs=0.05)


def test_teacher_check_reads_no_training_image(tmp_path: Path) -> None:
    """Scoring needs the test split alone: a damaged training photo is not opened."""
    root = make_imagefolder(tmp_path, classes=("ant", "bee"))
    damage_training_images(root)
    checkpoint = tmp_path / "teacher.pt"
    torch.save(create_model("resnet8", 2, 3).state_dict(), checkpoint)
    recipe = parse_recipe(
        {
            "teacher": {"arch": "resnet8", "checkpoint": str(checkpoint), "min_accuracy": 0},
            "student": {"arch": "resnet8"},
            "data": {"name": "imagefolder", "root": str(root)},
            "method": {"name": "kd"},
            "train": {"device": "cpu"},
        }
    )
    summary, count = check_teacher(recipe, "test")
    assert count == 2
    assert summary.parameters > 0


def test_a_teacher_whose_logits_are_not_finite_is_refused_before_distilling(
    tmp_path: Path,
) -> None:
    """NaN weights score chance, which the default min_accuracy 0 passes; distillation then
    stopped at its first NaN loss, blaming the learning rate."""
    model = create_model("resnet8", 10, 1)
    with torch.no_grad():
        model.linear.weight.fill_(float("nan"))
    checkpoint = tmp_path / "teacher.pt"
    torch.save(model.state_dict(), checkpoint)
    recipe = parse_recipe(
        {
            "teacher": {"arch": "resnet8", "checkpoint": str(checkpoint)},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"device": "cpu"},
        }
    )
    with pytest.raises(UserError, match="the teacher returns NaN or infinite logits on real"):
        check_teacher(recipe, "test")
