"""`load_test_split`: the test split as `load_dataset` gives it, without reading the training
split (what `compress teacher` and an export without INT8 score on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.data import (
    Dataset,
    EvalData,
    load_dataset,
    load_test_split,
    with_same_effect_written_as,
)
from compressor.errors import UserError
from compressor.recipe import DataConfig
from tests.data.image_files import (
    WNIDS,
    load_error,
    make_imagefolder,
    make_tiny_imagenet,
    save_image,
)
from tests.data.test_cifar import CIFAR10_TRAIN, make_cifar10


def _assert_same_test_split(alone: EvalData, full: Dataset) -> None:
    assert not isinstance(alone, Dataset)
    assert torch.equal(alone.test.images, full.test.images)
    assert torch.equal(alone.test.labels, full.test.labels)
    assert (alone.name, alone.classes, alone.mean, alone.std) == (
        full.name,
        full.classes,
        full.mean,
        full.std,
    )
    assert alone.image_shape == full.image_shape


def _damage(files: list[Path]) -> None:
    assert files
    for path in files:
        path.write_bytes(b"damaged")


def test_image_folder_test_split_decodes_no_training_image(tmp_path: Path) -> None:
    """Subset and resize as `load_dataset` does; a damaged training image is never opened."""
    root = make_imagefolder(tmp_path, classes=("ant", "bee", "cat"))
    config = DataConfig(name="imagefolder", root=root, max_test_samples=2, image_size=12)
    full = load_dataset(config)
    _damage([p for p in (root / "train").rglob("*") if p.suffix in (".png", ".JPG")])
    _assert_same_test_split(load_test_split(config), full)
    assert "cannot decode " in load_error(config)


def test_image_folder_test_split_of_another_size_is_refused_as_training_refuses(
    tmp_path: Path,
) -> None:
    root = make_imagefolder(tmp_path)
    for path in (root / "val").rglob("*.png"):
        save_image(path, size=(24, 24))
    config = DataConfig(name="imagefolder", root=root)
    expected = "train images are 16x16 but test images are 24x24; set data.image_size"
    with pytest.raises(UserError, match=expected):
        load_test_split(config)
    assert expected in load_error(config)
    resized = load_test_split(DataConfig(name="imagefolder", root=root, image_size=16))
    assert resized.image_shape == (3, 16, 16)


def test_image_folder_test_split_refuses_a_class_training_would_refuse(tmp_path: Path) -> None:
    """The classes are train/'s folders: one without an image is refused here too, not
    scored under labels training would number differently."""
    root = make_imagefolder(tmp_path)
    (root / "train" / "empty").mkdir()
    config = DataConfig(name="imagefolder", root=root)
    with pytest.raises(UserError, match="has no images"):
        load_test_split(config)


def test_tiny_imagenet_test_split_decodes_no_training_image(tmp_path: Path) -> None:
    root = make_tiny_imagenet(tmp_path / "tiny")
    config = DataConfig(name="tiny_imagenet", root=root)
    full = load_dataset(config)
    _damage(list((root / "train").rglob("*.JPEG")))
    _assert_same_test_split(load_test_split(config), full)
    for path in (root / "train" / WNIDS[1] / "images").iterdir():
        path.unlink()
    with pytest.raises(UserError, match="needs training images"):
        load_test_split(config)


def test_cifar_test_split_reads_no_training_batch(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    config = DataConfig(name="cifar10", root=tmp_path, max_test_samples=50)
    full = load_dataset(config)
    _damage([folder / name for name in CIFAR10_TRAIN])
    _assert_same_test_split(load_test_split(config), full)
    assert "data_batch_1 is not a readable CIFAR pickle" in load_error(config)


def test_statistics_measured_on_the_training_split_read_it() -> None:
    """Digits normalise with statistics of their training split, so scoring reads it to
    normalise as training did; recipe values need no training split."""
    config = DataConfig(name="digits")
    full = load_dataset(config)
    alone = load_test_split(config)
    assert (alone.mean, alone.std) == (full.mean, full.std)
    assert torch.equal(alone.test.images, full.test.images)
    given = load_test_split(DataConfig(name="digits", mean=(0.5,), std=(0.25,)))
    assert not isinstance(given, Dataset)
    assert (given.mean, given.std) == ((0.5,), (0.25,))


@pytest.mark.parametrize(
    ("started", "current"),
    [
        ({"name": "digits"}, {"name": "digits", "flip": False}),
        ({"name": "digits", "flip": False}, {"name": "digits"}),
        ({"name": "digits"}, {"name": "digits", "image_size": 8, "crop_padding": 1}),
        (
            {"name": "cifar10", "root": "/nowhere"},
            {
                "name": "cifar10",
                "root": "/nowhere",
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "flip": True,
            },
        ),
    ],
)
def test_a_data_sets_default_written_out_is_the_same_setting(started: dict, current: dict) -> None:
    """A resume compares the recipe with the one the run wrote: `flip: false` on digits is what
    the run did with flip left out."""
    written = with_same_effect_written_as(DataConfig(**started), DataConfig(**current))
    assert written == DataConfig(**current)


@pytest.mark.parametrize(
    ("current", "field"),
    [
        ({"flip": True}, "flip"),
        ({"crop_padding": 2}, "crop_padding"),
        ({"image_size": 16}, "image_size"),
        ({"mean": [0.5], "std": [0.2]}, "mean"),
    ],
)
def test_a_setting_that_does_something_else_still_differs(current: dict, field: str) -> None:
    started = DataConfig(name="digits")
    written = with_same_effect_written_as(started, DataConfig(name="digits", **current))
    assert getattr(written, field) is None
