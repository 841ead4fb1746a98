"""The real pretrained teachers in ../shared, loaded through a recipe, score their published
accuracy on the real CIFAR-10 test set — the end-to-end proof of the loader and the zoo."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.engine.run import check_teacher
from compressor.recipe import parse_recipe


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
