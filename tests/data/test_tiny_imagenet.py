"""The Tiny ImageNet reader on a small copy of its layout: both splits, layout errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.data import dataset_num_classes, load_dataset
from compressor.errors import UserError
from compressor.recipe import DataConfig
from tests.data.image_files import WNIDS, load_error, make_tiny_imagenet


def test_tiny_imagenet_reads_both_splits(tmp_path: Path) -> None:
    root = make_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    config = DataConfig(name="tiny_imagenet", root=tmp_path)  # the parent works too
    dataset = load_dataset(config)
    assert dataset_num_classes(config) == dataset.num_classes == 3
    assert dataset.classes == ["goldfish", "European fire salamander", WNIDS[2]]
    assert dataset.train.images.shape == (9, 3, 16, 16)
    assert dataset.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert dataset.test.labels.tolist() == [0, 1, 2]
    assert (dataset.crop_padding, dataset.flip) == (2, True)
    assert dataset.mean == (0.485, 0.456, 0.406)
    grey = dataset.train.images[3]  # a grayscale JPEG, expanded to three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert load_dataset(DataConfig(name="tiny_imagenet", root=root)).num_classes == 3


def test_tiny_imagenet_layout_errors(tmp_path: Path) -> None:
    message = load_error(DataConfig(name="tiny_imagenet", root=tmp_path))
    assert "not a Tiny ImageNet directory" in message and "wnids.txt" in message
    root = make_tiny_imagenet(tmp_path / "t")
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "extra.JPEG\tn99999999\t0\t0\t1\t1\n")
    message = load_error(DataConfig(name="tiny_imagenet", root=root))
    assert "line 4" in message and "n99999999" in message
    (root / "wnids.txt").write_text(WNIDS[0] + "\n")
    with pytest.raises(UserError, match="at least 2"):
        dataset_num_classes(DataConfig(name="tiny_imagenet", root=root))


def test_tiny_imagenet_text_that_is_not_utf8(tmp_path: Path) -> None:
    """words.txt only names classes: a Latin-1 byte is shown replaced. A listing the data
    depends on (wnids.txt, val_annotations.txt) that is not UTF-8 is named in one line."""
    root = make_tiny_imagenet(tmp_path / "t")
    (root / "words.txt").write_bytes(b"n01443537\tpoisson rouge caf\xe9\n")
    assert (
        load_dataset(DataConfig(name="tiny_imagenet", root=root)).classes[0]
        == "poisson rouge caf\ufffd"
    )
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_bytes(annotations.read_bytes() + b"\xe9\n")
    message = load_error(DataConfig(name="tiny_imagenet", root=root))
    assert (
        f"{annotations} is not UTF-8 text" in message and "download the data set again" in message
    )
    (root / "wnids.txt").write_bytes(b"\xff\xfe" + (root / "wnids.txt").read_bytes())
    with pytest.raises(UserError, match=r"wnids.txt is not UTF-8 text"):
        dataset_num_classes(DataConfig(name="tiny_imagenet", root=root))
