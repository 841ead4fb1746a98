"""The data line a run prints, and its warnings for classes a split has no image of."""

from __future__ import annotations

from pathlib import Path

from compressor.data import load_dataset
from compressor.data.summary import data_summary
from compressor.recipe import DataConfig
from tests.data.image_files import make_imagefolder


def test_a_class_without_held_out_images_is_warned_about(tmp_path: Path) -> None:
    """Loading accepts it (a test split may lack a class), but the accuracy then never
    scores it: said, as a class without training images is."""
    root = make_imagefolder(tmp_path, classes=("bird", "cat", "dog"))
    (root / "val" / "dog" / "c.png").unlink()
    config = DataConfig(name="imagefolder", root=root)
    assert data_summary(load_dataset(config), config) == [
        "data imagefolder: 6 training and 2 test images of 16x16, 3 classes",
        "warning: no test image of 1 of the 3 classes (dog): the test accuracy never scores "
        "them; add images of them to the held-out split",
    ]


def test_subsets_smaller_than_the_class_count_name_the_setting(tmp_path: Path) -> None:
    config = DataConfig(name="digits", max_train_samples=5, max_test_samples=4)
    assert data_summary(load_dataset(config), config)[1:] == [
        "warning: no training image of 5 of the 10 classes (5, 6, 7, 8, 9): the student cannot "
        "learn them; data.max_train_samples 5 is fewer than the classes: raise it",
        "warning: no test image of 6 of the 10 classes (4, 5, 6, 7, 8 and 1 more): the test "
        "accuracy never scores them; data.max_test_samples 4 is fewer than the classes: raise it",
    ]
