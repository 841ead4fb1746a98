"""The image-folder reader on small real PNG/JPEG trees written with PIL."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.data import (
    check_stats_channels,
    dataset_image_size,
    dataset_num_classes,
    imagefolder,
    load_dataset,
    load_test_split,
)
from compressor.data.sets import subset_indices
from compressor.errors import UserError
from compressor.recipe import DataConfig
from tests.data.image_files import load_error, make_imagefolder, save_image


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
    save_image(root / "train" / "dog" / "big.png", size=(40, 24))
    message = load_error(DataConfig(name="imagefolder", root=root))
    assert "big.png is 40x24" in message and "is 16x16" in message and "image_size" in message
    dataset = load_dataset(DataConfig(name="imagefolder", root=root, image_size=12))
    assert dataset.image_shape == (3, 12, 12) and len(dataset.train) == 5
    assert dataset.crop_padding == 1


def test_imagefolder_val_class_must_exist_in_train(tmp_path: Path) -> None:
    """Checked by the class count too, which `recipe validate` runs: it said "valid" and the
    first run stopped on the layout. A folder spelt differently is named."""
    root = make_imagefolder(tmp_path)
    save_image(root / "val" / "horse" / "x.png")
    config = DataConfig(name="imagefolder", root=root)
    expected = (
        f"{root / 'val' / 'horse'}: class 'horse' has no folder in train/; remove it or add "
        "training images for it"
    )
    assert load_error(config) == expected
    with pytest.raises(UserError, match="^" + re.escape(expected)):
        dataset_num_classes(config)
    (root / "val" / "horse").rename(root / "val" / "Cat")
    renamed = f"{root / 'val' / 'Cat'}: class 'Cat' has no folder in train/; rename it 'cat'"
    assert load_error(config).startswith(renamed)
    with pytest.raises(UserError, match="^" + re.escape(renamed)):
        dataset_num_classes(config)

    # A near name that is another word is named without a word of Unicode spellings.
    (root / "val" / "Cat").rename(root / "val" / "cats")
    assert load_error(config) == (
        f"{root / 'val' / 'cats'}: class 'cats' has no folder in train/; rename it 'cat' as in "
        "train/, remove it or add training images for it"
    )
    (root / "val" / "cats").rename(root / "val" / "Cat")

    # Spelt alike once normalised (macOS writes 'é' decomposed): the names are shown escaped,
    # where "rename it 'café'" named a folder that looks the same as the one there.
    (root / "train" / "cat").rename(root / "train" / "caf\u00e9")
    (root / "val" / "Cat").rename(root / "val" / "cafe\u0301")
    assert load_error(config).endswith(
        "rename it 'caf\u00e9' as in train/ (the two look alike but are spelt with other Unicode "
        "characters: 'cafe\\u0301' here, 'caf\\xe9' there), remove it or add training images "
        "for it"
    )


def test_imagefolder_needs_two_classes(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path, classes=("only",))
    assert "at least 2" in load_error(DataConfig(name="imagefolder", root=root))
    with pytest.raises(UserError, match="at least 2"):
        dataset_num_classes(DataConfig(name="imagefolder", root=root))


def test_imagefolder_empty_val_split(tmp_path: Path) -> None:
    """Refused by the class count too, which `recipe validate` runs: it said "valid" and the
    first run stopped. Class folders with no images, and no class folders at all."""
    root = make_imagefolder(tmp_path)
    config = DataConfig(name="imagefolder", root=root)
    for path in (root / "val").rglob("*.png"):
        path.unlink()
    expected = (
        f"{root / 'val'} has no images in class folders (.jpg, .jpeg, .png, .ppm, .bmp, .pgm, "
        ".tif, .tiff, .webp); put the held-out images in val/<class>/"
    )
    for _ in ("empty class folders", "no class folders"):
        assert load_error(config) == expected
        with pytest.raises(UserError) as error:
            dataset_num_classes(config)
        assert error.value.lines == [expected]
        for folder in (root / "val").iterdir():
            folder.rmdir()


def test_imagefolder_missing_folders(tmp_path: Path) -> None:
    message = load_error(DataConfig(name="imagefolder", root=tmp_path))
    assert "train does not exist" in message and "train/<class>/<image>" in message
    (tmp_path / "train").write_text("")  # not "does not exist": the user can see it does
    message = load_error(DataConfig(name="imagefolder", root=tmp_path))
    assert f"{tmp_path / 'train'} is a file, not a folder; an imagefolder" in message
    (tmp_path / "train").unlink()
    root = make_imagefolder(tmp_path / "data")
    for path in sorted((root / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "val").rmdir()
    assert "no val/ (or test/) folder" in load_error(DataConfig(name="imagefolder", root=root))

    # The usual slips, named: data.root pointing into a split, or a folder never split.
    into_split = load_error(DataConfig(name="imagefolder", root=root / "train"))
    assert into_split.endswith(f"; data.root names a split: set it to {root}")
    for name in ("cat", "dog"):
        save_image(tmp_path / "flat" / name / "a.png")
    flat = load_error(DataConfig(name="imagefolder", root=tmp_path / "flat"))
    assert flat.endswith(
        f"; {tmp_path / 'flat'} holds class folders but no split: move most images of each "
        "class to train/<class>/ and the rest, held out, to val/<class>/"
    )
    # A split under another name beside val/ is not taken for a class folder.
    (tmp_path / "flat").rename(tmp_path / "training")
    (tmp_path / "misnamed").mkdir()
    (tmp_path / "training").rename(tmp_path / "misnamed" / "training")
    save_image(tmp_path / "misnamed" / "val" / "cat" / "a.png")
    misnamed = load_error(DataConfig(name="imagefolder", root=tmp_path / "misnamed"))
    assert misnamed.endswith("/val/<class>/<image>")
    with pytest.raises(UserError, match="no val/ \\(or test/\\) folder"):
        dataset_num_classes(DataConfig(name="imagefolder", root=root))


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
    assert "cannot decode " in load_error(DataConfig(name="imagefolder", root=root))


def test_imagefolder_size_comes_from_the_first_training_image_header(tmp_path: Path) -> None:
    """What `recipe validate` runs the models on without decoding: the size the loader gives
    the images, height first (a 24-wide, 16-high photo is [16, 24]); data.image_size wins."""
    root = make_imagefolder(tmp_path, classes=("ant", "bee"))
    for path in (root / "train").rglob("*"):
        if path.suffix in (".png", ".JPG"):
            save_image(path, size=(24, 16))
    for path in (root / "val").rglob("*.png"):
        save_image(path, size=(24, 16))
    config = DataConfig(name="imagefolder", root=root)
    assert dataset_image_size(config) == (16, 24)
    assert load_dataset(config).image_shape == (3, 16, 24)
    assert dataset_image_size(DataConfig(name="imagefolder", root=root, image_size=20)) == (20, 20)
    assert dataset_image_size(DataConfig(name="cifar10", root=root)) == (32, 32)


def test_imagefolder_class_count_refuses_an_empty_class_folder(tmp_path: Path) -> None:
    """An empty folder would be counted as a class the data never has; the check before a run
    names it, as loading does."""
    root = make_imagefolder(tmp_path)
    (root / "train" / "empty" / "nested").mkdir(parents=True)
    config = DataConfig(name="imagefolder", root=root)
    expected = f"{root / 'train' / 'empty'} has no images (.jpg, .jpeg"
    with pytest.raises(UserError) as caught:
        dataset_num_classes(config)
    assert str(caught.value).startswith(expected)
    assert load_error(config).startswith(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((0.5,), "have 1 value but imagefolder images have 3 channels;"),
        ((0.5, 0.5), "have 2 values but imagefolder images have 3 channels;"),
    ],
)
def test_imagefolder_stats_need_three_values_known_before_reading(
    tmp_path: Path, values: tuple[float, ...], expected: str
) -> None:
    """Image files are read as RGB: a wrong count is refused without reading the folder, by
    `recipe validate` and by loading alike."""
    missing = DataConfig(name="imagefolder", root=tmp_path / "nowhere", mean=values, std=values)
    with pytest.raises(UserError, match=expected):
        check_stats_channels(missing)
    with pytest.raises(UserError, match=expected):
        load_dataset(missing)


def test_channels_1_reads_an_image_folder_as_grayscale(tmp_path: Path) -> None:
    """A model for one-channel images (a teacher trained on scans) needs them as one channel:
    every image, colour, 16-bit or with transparency, becomes PIL's luma, normalised by
    ImageNet's statistics averaged over the channels unless data.mean/std are given."""
    root = make_imagefolder(tmp_path)
    save_image(root / "val" / "dog" / "d.png", value=50, mode="RGBA")
    config = DataConfig(name="imagefolder", root=root, channels=1)
    dataset = load_dataset(config)
    assert dataset.image_shape == (1, 16, 16)
    assert (dataset.mean, dataset.std) == ((0.449,), (0.226,))
    # Left half (150, 150, 7) and right half (50, 50, 7): L = 0.299 R + 0.587 G + 0.114 B.
    luma = [round(0.299 * v + 0.587 * v + 0.114 * 7) for v in (150, 50)]
    for image in dataset.test.images[1:]:
        assert [int(image[0, 0, 0]), int(image[0, 0, 15])] == luma
    assert check_stats_channels(DataConfig(name="imagefolder", root=root, channels=1)) is None
    with pytest.raises(UserError, match=r"images have 1 channel \(read so by data.channels: 1\);"):
        check_stats_channels(
            DataConfig(name="imagefolder", root=root, channels=1, mean=(0.5,) * 3, std=(0.2,) * 3)
        )


@pytest.mark.parametrize(
    "denied",
    ["train", "train/cat", "train/cat/nested"],
    ids=["split", "class folder", "folder in a class"],
)
def test_a_folder_that_cannot_be_listed_is_named_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denied: str
) -> None:
    """As `chmod 000` does for a user who is not root (the suite runs as root, which it does
    not bind, so the listing calls refuse here instead). Before: a crash with a traceback
    for the split, "has no images" for the class, and a folder inside a class skipped with
    its images without a word."""
    root = make_imagefolder(tmp_path)
    refused = str(root / denied)

    def refusing(call):
        def listing(path=".", *args, **kwargs):
            if os.fspath(path) == refused:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return call(path, *args, **kwargs)

        return listing

    monkeypatch.setattr(os, "scandir", refusing(os.scandir))
    monkeypatch.setattr(os, "listdir", refusing(os.listdir))
    config = DataConfig(name="imagefolder", root=root)
    expected = (
        f"{refused}: cannot list this data folder (Permission denied); make it readable "
        "(permissions: `chmod -R a+rX`), or move it out of the data"
    )
    if denied != "train/cat/nested":  # checking a recipe stops at the first image found
        with pytest.raises(UserError) as caught:
            dataset_num_classes(config)
        assert str(caught.value) == expected
    assert load_error(config) == expected


@pytest.mark.parametrize("split", ["train", "val"])
def test_images_beside_the_class_folders_are_refused_not_dropped(
    tmp_path: Path, split: str
) -> None:
    root = make_imagefolder(tmp_path)
    save_image(root / split / "stray.png")
    (root / split / "README.txt").write_text("not an image: no reason to refuse")
    config = DataConfig(name="imagefolder", root=root)
    expected = (
        f"{root / split} holds images outside its class folders (stray.png); move each into "
        f"its class folder, {split}/<class>/, or out of {split}/"
    )
    with pytest.raises(UserError) as caught:
        dataset_num_classes(config)
    assert str(caught.value) == expected
    assert load_error(config) == expected


def test_a_class_folder_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Latin-1 'café' reached the ONNX metadata as "caf\\udce9", a lone surrogate strict JSON
    and UTF-8 readers refuse."""
    root = make_imagefolder(tmp_path)
    latin1 = os.fsdecode(b"caf\xe9")
    for split in ("train", "val"):
        (root / split / "cat").rename(root / split / latin1)
    config = DataConfig(name="imagefolder", root=root)
    expected = (
        f"{root / 'train' / latin1}: the class folder's name is not UTF-8 ('caf\\xe9', from a "
        "Latin-1 or other legacy encoding); rename it: class names go into student.pt, the "
        "reports and the ONNX metadata as UTF-8 text"
    )
    with pytest.raises(UserError) as caught:
        dataset_num_classes(config)
    assert str(caught.value) == expected
    assert load_error(config) == expected


@pytest.mark.parametrize("link", ["train/dog/gone.png", "train/bird"], ids=["image", "class"])
def test_a_link_to_nothing_in_the_data_is_named_not_skipped(tmp_path: Path, link: str) -> None:
    root = make_imagefolder(tmp_path)
    (root / link).symlink_to(tmp_path / "moved-away")
    config = DataConfig(name="imagefolder", root=root)
    assert load_error(config) == (
        f"{root / link}: a link to {tmp_path / 'moved-away'}, which does not exist; point it "
        "at the data, or delete it"
    )


def test_one_file_reached_from_two_classes_or_both_splits_is_refused(tmp_path: Path) -> None:
    """A linked folder (`train/cat/up -> ..`, a link into val/) was followed without a word:
    images trained under two labels, or test images trained on."""
    root = make_imagefolder(tmp_path / "photos")
    (root / "train" / "dog" / "seen").symlink_to(root / "val" / "dog")
    assert load_error(DataConfig(name="imagefolder", root=root)) == (
        f"{root / 'train' / 'dog' / 'seen' / 'c.png'} (train/dog) and "
        f"{root / 'val' / 'dog' / 'c.png'} (val/dog) are one file, reached through a link; an "
        "image needs one class, and the test split must hold images training never saw: "
        "remove the link"
    )
    (root / "train" / "dog" / "seen").unlink()
    (root / "train" / "cat" / "up").symlink_to(root / "train")
    assert "(train/cat) and " in load_error(DataConfig(name="imagefolder", root=root))
    (root / "train" / "cat" / "up").unlink()
    (root / "train" / "cat" / "again.png").symlink_to(root / "train" / "cat" / "a.png")
    assert load_dataset(DataConfig(name="imagefolder", root=root)).train.labels.tolist() == [
        0,
        0,
        0,
        1,
        1,
    ]  # the same file twice in its own class: an oversampling link, let be


def test_max_train_and_max_test_samples_each_cut_their_own_split(tmp_path: Path) -> None:
    """A quick run that keeps few training images but scores on more: the test split cut to
    the training split's count would report an accuracy over 2 images as if over 8."""
    root = make_imagefolder(tmp_path)
    for label, name in enumerate(("cat", "dog")):
        for i in range(4):
            save_image(root / "val" / name / f"more{i}.png", value=50 * label)
    config = DataConfig(name="imagefolder", root=root, max_train_samples=2, max_test_samples=8)
    dataset = load_dataset(config)
    assert (len(dataset.train), len(dataset.test)) == (2, 8)
    assert len(load_test_split(config).test) == 8


def test_the_test_split_alone_of_non_square_images_is_read_height_first(tmp_path: Path) -> None:
    """Scoring without the training split compares the test images with the first training
    image's header, (height, width): compared the other way round, 24-wide, 16-high photos
    were refused as a size mismatch with themselves."""
    root = make_imagefolder(tmp_path)
    for path in root.rglob("*"):
        if path.suffix in (".png", ".JPG"):
            save_image(path, size=(24, 16))
    alone = load_test_split(DataConfig(name="imagefolder", root=root))
    assert alone.image_shape == (3, 16, 24) and len(alone.test) == 2


def test_class_labels_follow_the_sorted_folder_names_case_included(tmp_path: Path) -> None:
    """Labels are the index of the class in `classes` (sorted as torchvision sorts, capitals
    first): a label taken from another order would train every image under another class's
    name, and the class names the student carries would not match its outputs."""
    root = make_imagefolder(tmp_path, classes=("ant", "Zebra"))  # ant darker than Zebra
    dataset = load_dataset(DataConfig(name="imagefolder", root=root))
    assert dataset.classes == ["Zebra", "ant"]
    for split in (dataset.train, dataset.test):
        left = split.images[:, 0, 0, 0].tolist()  # value + 100: ant's 100, Zebra's 150
        named = [dataset.classes[label] for label in split.labels.tolist()]
        assert named == ["ant" if value < 125 else "Zebra" for value in left]  # JPEGs too
        assert sorted(set(named)) == ["Zebra", "ant"]
