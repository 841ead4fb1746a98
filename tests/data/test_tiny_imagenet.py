"""The Tiny ImageNet reader on a small copy of its layout: both splits, layout errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.data import dataset_num_classes, load_dataset
from compressor.errors import UserError
from compressor.recipe import DataConfig
from tests.data.image_files import WNIDS, load_error, make_tiny_imagenet, save_image


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


def test_tiny_imagenet_listings_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Windows Notepad starts UTF-8 files with U+FEFF: it became part of the first WordNet id,
    and `train/\\ufeffn01443537/images has no images` named a folder full of them."""
    root = make_tiny_imagenet(tmp_path / "t")
    for name in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    dataset = load_dataset(DataConfig(name="tiny_imagenet", root=root))
    assert dataset.classes == ["goldfish", "European fire salamander", WNIDS[2]]
    assert dataset.test.labels.tolist() == [0, 1, 2]


def test_tiny_imagenet_validation_image_named_but_missing(tmp_path: Path) -> None:
    """Found by the recipe check, naming the line, not after decoding the training split as
    "cannot decode image ...: No such file or directory:; fix or delete the file"."""
    root = make_tiny_imagenet(tmp_path / "t")
    (root / "val" / "images" / "val_1.JPEG").unlink()
    config = DataConfig(name="tiny_imagenet", root=root)
    expected = (
        f"{root / 'val' / 'val_annotations.txt'} line 2: names 'val_1.JPEG', which is not in "
        f"{root / 'val' / 'images'}; put the image back, or download the data set again"
    )
    with pytest.raises(UserError) as caught:
        dataset_num_classes(config)
    assert str(caught.value) == expected
    assert load_error(config) == expected


def test_tiny_imagenet_recipe_check_needs_the_validation_listing(tmp_path: Path) -> None:
    root = make_tiny_imagenet(tmp_path / "t")
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(UserError, match=r"val_annotations\.txt is missing"):
        dataset_num_classes(DataConfig(name="tiny_imagenet", root=root))


def test_tiny_imagenet_training_folder_wnids_does_not_list(tmp_path: Path) -> None:
    """A whole class was left out of the data without a word."""
    root = make_tiny_imagenet(tmp_path / "t")
    (root / "wnids.txt").write_text("\n".join(WNIDS[:2]) + "\n")
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_text("".join(annotations.read_text().splitlines(keepends=True)[:2]))
    config = DataConfig(name="tiny_imagenet", root=root)
    expected = (
        f"{root / 'train'} has class folders wnids.txt does not list ({WNIDS[2]}); add their "
        "WordNet ids to wnids.txt, or move the folders out of train/"
    )
    with pytest.raises(UserError) as caught:
        dataset_num_classes(config)
    assert str(caught.value) == expected
    assert load_error(config) == expected


def test_tiny_imagenet_classes_words_txt_names_alike_are_told_apart(tmp_path: Path) -> None:
    root = make_tiny_imagenet(tmp_path / "t")
    (root / "words.txt").write_text(f"{WNIDS[0]}\tfrog, tree frog\n{WNIDS[1]}\tfrog, bullfrog\n")
    classes = load_dataset(DataConfig(name="tiny_imagenet", root=root)).classes
    assert classes == [f"frog ({WNIDS[0]})", f"frog ({WNIDS[1]})", WNIDS[2]]


def test_a_subset_decodes_only_the_images_it_keeps(tmp_path: Path) -> None:
    """data.max_train_samples decoded all 100k training JPEGs, then kept a thousand; the
    images kept are the ones the whole split gave."""
    root = make_tiny_imagenet(tmp_path / "tiny", per_class=4)
    files = sorted((root / "train").rglob("*.JPEG"))
    for number, path in enumerate(files):  # each image told apart by its right half
        save_image(path, value=10 * number)
    config = DataConfig(name="tiny_imagenet", root=root, max_train_samples=3, max_test_samples=2)
    whole = load_dataset(config)
    assert (len(whole.train), len(whole.test)) == (3, 2)
    kept = {round(float(value) / 10) for value in whole.train.images[:, 0, 0, -1]}
    for number, path in enumerate(files):  # the images the subset drops, damaged
        if number not in kept:
            path.write_bytes(b"not a jpeg")
    again = load_dataset(config)
    assert torch.equal(again.train.images, whole.train.images)
    assert torch.equal(again.train.labels, whole.train.labels)
