"""Tiny ImageNet and imagefolder readers on small real JPEG/PNG trees written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compressor.data import dataset_num_classes, imagefolder, load_dataset
from compressor.data.sets import subset_indices
from compressor.errors import UserError
from compressor.recipe import DataConfig

WNIDS = ["n01443537", "n01629819", "n01641577"]


def _save(path: Path, size: tuple[int, int] = (16, 16), value: int = 0, mode: str = "RGB") -> None:
    """A flat image with a brighter left half, so flips and channels are visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    pixels[:, : size[0] // 2] = np.uint8(min(value + 100, 255))
    pixels[..., 2] = 7
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode != "RGB" else image).save(path)


def make_tiny_imagenet(root: Path, per_class: int = 3) -> Path:
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text(
        "n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n"
    )
    annotations = []
    for label, wnid in enumerate(WNIDS):
        for i in range(per_class):
            mode = "L" if i == 0 else "RGB"  # Tiny ImageNet has some grayscale JPEGs
            _save(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", value=40 * label, mode=mode
            )
        name = f"val_{label}.JPEG"
        _save(root / "val" / "images" / name, value=40 * label)
        annotations.append(f"{name}\t{wnid}\t0\t0\t15\t15")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return root


def make_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    for label, name in enumerate(classes):
        _save(root / "train" / name / "a.png", value=50 * label)
        _save(root / "train" / name / "nested" / "b.JPG", value=50 * label)
        _save(root / "val" / name / "c.png", value=50 * label)
    (root / "train" / classes[0] / "notes.txt").write_text("not an image")
    (root / "train" / classes[0] / "._a.png").write_bytes(b"macOS metadata, not an image")
    return root


def _error(config: DataConfig) -> str:
    with pytest.raises(UserError) as caught:
        load_dataset(config)
    message = str(caught.value)
    assert "\n" not in message
    return message


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
    message = _error(DataConfig(name="tiny_imagenet", root=tmp_path))
    assert "not a Tiny ImageNet directory" in message and "wnids.txt" in message
    root = make_tiny_imagenet(tmp_path / "t")
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "extra.JPEG\tn99999999\t0\t0\t1\t1\n")
    message = _error(DataConfig(name="tiny_imagenet", root=root))
    assert "line 4" in message and "n99999999" in message
    (root / "wnids.txt").write_text(WNIDS[0] + "\n")
    with pytest.raises(UserError, match="at least 2"):
        dataset_num_classes(DataConfig(name="tiny_imagenet", root=root))


def test_imagefolder_reads_classes_from_folders(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    config = DataConfig(name="imagefolder", root=root)
    dataset = load_dataset(config)
    assert dataset_num_classes(config) == dataset.num_classes == 2
    assert dataset.classes == ["cat", "dog"]
    assert dataset.train.labels.tolist() == [0, 0, 1, 1]  # nested/ included, junk skipped
    assert dataset.test.labels.tolist() == [0, 1]
    image = dataset.test.images[1]  # a lossless PNG: exact pixels, RGB planes
    assert image[0, 0, 0] == 150 and image[0, 0, 15] == 50 and image[2, 4, 4] == 7
    assert (dataset.crop_padding, dataset.flip) == (2, True)


def test_imagefolder_accepts_test_instead_of_val(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    (root / "val").rename(root / "test")
    assert len(load_dataset(DataConfig(name="imagefolder", root=root)).test) == 2


def test_imagefolder_sizes_must_agree_unless_image_size_is_set(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    _save(root / "train" / "dog" / "big.png", size=(40, 24))
    message = _error(DataConfig(name="imagefolder", root=root))
    assert "big.png is 40x24" in message and "is 16x16" in message and "image_size" in message
    dataset = load_dataset(DataConfig(name="imagefolder", root=root, image_size=12))
    assert dataset.image_shape == (3, 12, 12) and len(dataset.train) == 5
    assert dataset.crop_padding == 1


def test_imagefolder_val_class_must_exist_in_train(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    _save(root / "val" / "horse" / "x.png")
    message = _error(DataConfig(name="imagefolder", root=root))
    assert "'horse'" in message and "train/" in message


def test_imagefolder_needs_two_classes(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path, classes=("only",))
    assert "at least 2" in _error(DataConfig(name="imagefolder", root=root))
    with pytest.raises(UserError, match="at least 2"):
        dataset_num_classes(DataConfig(name="imagefolder", root=root))


def test_imagefolder_empty_val_split(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    for path in (root / "val").rglob("*.png"):
        path.unlink()
    assert "has no images" in _error(DataConfig(name="imagefolder", root=root))


def test_imagefolder_missing_folders(tmp_path: Path) -> None:
    message = _error(DataConfig(name="imagefolder", root=tmp_path))
    assert "train does not exist" in message and "train/<class>/<image>" in message
    root = make_imagefolder(tmp_path / "data")
    for path in sorted((root / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "val").rmdir()
    assert "no val/ (or test/) folder" in _error(DataConfig(name="imagefolder", root=root))


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    message = _error(DataConfig(name="imagefolder", root=root))
    assert "cannot decode image" in message and "broken.jpg" in message


def test_imagefolder_decodes_only_the_kept_images(tmp_path: Path) -> None:
    """Image folders take no statistics over the whole split, so a quick run decodes only the
    images max_*_samples keeps (a damaged one elsewhere is never opened), with or without
    data.mean/std; they are the images a full read would keep."""
    root = make_imagefolder(tmp_path)
    paths, labels = imagefolder._files(root / "train", ["cat", "dog"], True)
    kept = set(subset_indices(np.asarray(labels), 2).tolist())
    dropped = next(path for index, path in enumerate(paths) if index not in kept)
    stats = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    full = load_dataset(DataConfig(name="imagefolder", root=root))
    dropped.write_bytes(b"damaged")
    for given in ({}, stats):
        subset = load_dataset(
            DataConfig(name="imagefolder", root=root, max_train_samples=2, **given)
        )
        kept_images = full.train.images[sorted(kept)]
        assert torch.equal(subset.train.images, kept_images)
        assert torch.equal(subset.train.labels, full.train.labels[sorted(kept)])
    assert "cannot decode image" in _error(DataConfig(name="imagefolder", root=root))
