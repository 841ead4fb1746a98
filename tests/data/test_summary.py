"""The data line a run prints, and its warnings for classes a split has no image of."""

from __future__ import annotations

import shutil
from pathlib import Path

from compressor.data import load_dataset
from compressor.data.summary import data_summary, missing_class_warnings
from compressor.recipe import DataConfig
from tests.data.image_files import make_imagefolder


def test_a_class_without_held_out_images_is_warned_about(tmp_path: Path) -> None:
    """Loading accepts it (a test split may lack a class), but the accuracy then never
    scores it: said, as a class without training images is."""
    root = make_imagefolder(tmp_path, classes=("bird", "cat", "dog"))
    (root / "val" / "dog" / "c.png").unlink()
    config = DataConfig(name="imagefolder", root=root)
    dataset = load_dataset(config)
    assert data_summary(dataset, config) == (
        "data imagefolder: 6 training and 2 test images (from val/) of 16x16, 3 classes"
    )
    assert missing_class_warnings(dataset, config) == [
        "no test image of 1 of the 3 classes (dog): the test accuracy never scores them; add "
        "images of them to the held-out split"
    ]


def test_subsets_smaller_than_the_class_count_name_the_setting(tmp_path: Path) -> None:
    config = DataConfig(name="digits", max_train_samples=5, max_test_samples=4)
    assert missing_class_warnings(load_dataset(config), config) == [
        "no training image of 5 of the 10 classes (5, 6, 7, 8, 9): the student cannot "
        "learn them; data.max_train_samples 5 is fewer than the classes: raise it",
        "no test image of 6 of the 10 classes (4, 5, 6, 7, 8 and 1 more): the test "
        "accuracy never scores them; data.max_test_samples 4 is fewer than the classes: raise it",
    ]


def test_the_data_line_says_which_folder_was_scored_and_which_way_round_a_size_is(
    tmp_path: Path,
) -> None:
    """With train/, val/ and test/, val/ is the test split: said, with the test/ it leaves
    unread. A size is width first, as image viewers write it, and said so when not square."""
    root = make_imagefolder(tmp_path, classes=("bird", "cat"), size=(24, 16))
    shutil.copytree(root / "val", root / "test")
    config = DataConfig(name="imagefolder", root=root)
    assert data_summary(load_dataset(config), config) == (
        "data imagefolder: 4 training and 2 test images (from val/; test/ beside it is not "
        "read, val/ comes first) of 24x16 (width x height), 2 classes"
    )
