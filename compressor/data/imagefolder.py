"""A user's own images, one folder per class (the torchvision ImageFolder convention):

    root/train/<class>/**/*.{jpg,jpeg,png,bmp,webp}
    root/val/<class>/...        (or root/test/<class>/...; val wins when both exist)

Classes are the sorted names of train's sub-folders; label i is the i-th name, as in
torchvision. Images are converted to RGB, or to grayscale with data.channels 1 (a model for
one-channel images: scans, X-rays, a teacher trained on such). Differing sizes need
data.image_size: silently picking a size for the user would change what the deployed model
expects. data.image_size resizes to a square (image_size x image_size), like torchvision's
Resize((s, s)).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import unicodedata
from pathlib import Path

from compressor.data.files import (
    IMAGE_SUFFIXES,
    UndecodableImages,
    dangling_link,
    decode_split,
    has_images,
    image_size,
    kept_files,
    list_folder,
    list_images,
    require_root,
)
from compressor.data.sets import ImageSet, first_few, sizes_differ
from compressor.errors import UserError
from compressor.recipe import DataConfig


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in list_folder(split_dir) if p.is_dir() and not p.name.startswith("."))


def _split_classes(split_dir: Path) -> list[Path]:
    """A split's class folders. Images beside them, in no class, and links to nothing are
    refused: skipped, they left the split smaller than the folder without a word."""
    entries = [p for p in list_folder(split_dir) if not p.name.startswith(".")]
    broken = next((p for p in entries if p.is_symlink() and not p.exists()), None)
    if broken is not None:
        raise dangling_link(broken)
    loose = sorted(p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise UserError(
            f"{split_dir} holds images outside its class folders ({first_few(loose)}); move "
            "each into "
            f"its class folder, {split_dir.name}/<class>/, or out of {split_dir.name}/"
        )
    return sorted(p for p in entries if p.is_dir())


def _train_dir(root: Path) -> Path:
    train = root / "train"
    if not train.is_dir():
        state = "is a file, not a folder" if train.exists() else "does not exist"
        raise UserError(
            f"{train} {state}; an imagefolder data set needs "
            f"{root}/train/<class>/<image> and {root}/val/<class>/<image>{_layout_hint(root)}"
        )
    return train


def _layout_hint(root: Path) -> str:
    """The two usual slips: data.root naming a split itself, or one folder of class folders
    never split into train/ and val/."""
    splits = ("train", "val", "test")
    if root.name in splits and (root.parent / "train").is_dir():
        return f"; data.root names a split: set it to {root.parent}"
    classes = [folder for folder in _class_dirs(root) if folder.name not in splits]
    if not any((root / split).is_dir() for split in splits) and any(
        _holds_images(folder) for folder in classes
    ):
        return (
            f"; {root} holds class folders but no split: move most images of each class to "
            "train/<class>/ and the rest, held out, to val/<class>/"
        )
    return ""


def _test_dir(root: Path) -> Path:
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / name
    raise UserError(f"{root} has no val/ (or test/) folder; put held-out images in val/<class>/")


def held_out_note(root: Path) -> str:
    """Which folder the test split is read from, for the data line: with train/val/test, val/
    wins, and a user who meant test/ should see that it is not the one scored."""
    split_dir = _test_dir(root)
    beside = _test_beside(split_dir)
    return f"from {split_dir.name}/" + (f"; {beside}" if beside else "")


def _test_beside(split_dir: Path) -> str:
    if split_dir.name == "val" and (split_dir.parent / "test").is_dir():
        return "test/ beside it is not read, val/ comes first"
    return ""


def _classes(train: Path) -> list[str]:
    classes = [p.name for p in _split_classes(train)]
    if len(classes) < 2:
        raise UserError(
            f"{train} has {len(classes)} class folder(s); classification needs at least 2 "
            f"(one sub-folder per class)"
        )
    for name in classes:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes Python carries as lone surrogates (PEP 383)
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            raise UserError(
                f"{train / name}: the class folder's name is not UTF-8 ('{shown}', from a "
                "Latin-1 or other legacy encoding); rename it: class names go into student.pt, "
                "the reports and the ONNX metadata as UTF-8 text"
            ) from None
    return classes


def _holds_images(folder: Path) -> bool:
    """Image files directly in `folder`: a class folder, not a split of class folders."""
    return any(
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES for path in list_folder(folder)
    )


def num_classes(cfg: DataConfig) -> int:
    """The class count a recipe is checked against, refusing what loading refuses first.

    An empty class folder still counts as a class: a teacher's head would be compared with a
    count the data never has, and the mismatch reported instead of the folder. So each class
    folder must hold an image (the first one found is enough), as `read` requires. The
    held-out split's folders are checked too (listed, not read): a missing val/ or a class
    training lacks would otherwise pass `recipe validate` and stop the first run.
    """
    root = require_root(cfg)
    classes = _checked_classes(_train_dir(root))
    test_dir = _test_dir(root)
    folders = _split_classes(test_dir)
    for folder in folders:
        if folder.name not in classes:
            raise _not_a_training_class(folder, classes)
    if not any(has_images(folder) for folder in folders):  # stops at the first image found
        raise _no_held_out_images(test_dir)
    return len(classes)


def _checked_classes(train: Path) -> list[str]:
    """The classes, each folder checked for an image (the first one found) without listing
    or decoding the training split."""
    classes = _classes(train)
    empty = next((name for name in classes if not has_images(train / name)), None)
    if empty is not None:
        raise _no_images(train / empty)
    return classes


def native_size(cfg: DataConfig) -> tuple[int, int]:
    """(height, width) the loader gives the images without data.image_size, from one header.

    Without image_size every image must have the size of the first training image, or
    loading refuses the folder; so that image's header tells a recipe check which size to
    try the models on without decoding the folder.
    """
    train = _train_dir(require_root(cfg))
    first_class = train / _classes(train)[0]
    images = list_images(first_class)
    if not images:
        raise _no_images(first_class)
    return image_size(images[0])


def _not_a_training_class(folder: Path, classes: list[str]) -> UserError:
    """A held-out class folder without a training folder: a stray class, or a name spelt
    differently (val/Cat beside train/cat), which the message then names."""
    same = [name for name in classes if _folded(name) == _folded(folder.name)]
    near = same or difflib.get_close_matches(folder.name, classes, n=1)
    rename = f"rename it {near[0]!r} as in train/, " if near else ""
    if same and same[0].casefold() != folder.name.casefold():  # alike only once normalised
        rename = (
            f"rename it {near[0]!r} as in train/ (the two look alike but are spelt with other "
            f"Unicode characters: {folder.name!a} here, {near[0]!a} there), "
        )
    return UserError(
        f"{folder}: class {folder.name!r} has no folder in train/; {rename}remove it or add "
        "training images for it"
    )


def _folded(name: str) -> str:
    """A name as a person reads it: case and Unicode composition (macOS writes 'é' as 'e'
    plus an accent, NFD; Linux and Windows keep it as typed, usually NFC) set aside."""
    return unicodedata.normalize("NFC", name).casefold()


def _no_images(folder: Path) -> UserError:
    return UserError(f"{folder} has no images ({', '.join(IMAGE_SUFFIXES)})")


def _no_held_out_images(split_dir: Path) -> UserError:
    """Training requires an image in every class folder, so only a held-out split gets here."""
    return UserError(
        f"{split_dir} has no images in class folders ({', '.join(IMAGE_SUFFIXES)}); put the "
        f"held-out images in {split_dir.name}/<class>/"
        + (f" ({beside})" if (beside := _test_beside(split_dir)) else "")
    )


def _files(split_dir: Path, classes: list[str], require_all: bool) -> tuple[list[Path], list[int]]:
    label_of = {name: label for label, name in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for folder in _split_classes(split_dir):
        if folder.name not in label_of:
            raise _not_a_training_class(folder, classes)
        files = list_images(folder)
        if require_all and not files:
            raise _no_images(folder)
        paths += files
        labels += [label_of[folder.name]] * len(files)
    if not paths:
        raise _no_held_out_images(split_dir)
    return paths, labels


def _refuse_one_file_in_two_places(
    splits: dict[str, tuple[list[Path], list[int]]], classes: list[str]
) -> None:
    """One image file reached from two classes, or from both splits (a linked folder such as
    `train/cat/up -> ..`, or a link into val/): listed silently, it was trained under two
    labels, or scored on after training on it. The same file twice in one class of one split
    is let be (a link that oversamples it)."""
    first: dict[tuple[int, int], tuple[Path, str]] = {}  # by file: path, "split/class"
    clashes: list[str] = []
    for split, (paths, labels) in splits.items():
        for path, label in zip(paths, labels, strict=True):
            status = os.stat(path)
            place = (path, f"{split}/{classes[label]}")
            seen = first.setdefault((status.st_dev, status.st_ino), place)
            if seen[1] != place[1]:
                clashes.append(f"{seen[0]} ({seen[1]}) and {path} ({place[1]})")
    if clashes:
        others = len(clashes) - 1
        more = f" (and {others} more such pair{'s' * (others > 1)})" if others else ""
        raise UserError(
            f"{clashes[0]} are one file, reached through a link{more}; an image needs one "
            "class, and the test split must hold images training never saw: remove the link"
        )


def read(cfg: DataConfig, with_train: bool = True) -> tuple[ImageSet | None, ImageSet, list[str]]:
    """Decode val/test images and, when `with_train`, train images into uint8 tensors.

    Without `with_train` no training image is listed or decoded, but the classes are still
    train/'s folder names, each required to hold an image as reading the split requires: the
    labels are the ones training used, and a folder training refuses is refused here too.
    """
    root = require_root(cfg)
    train_dir = _train_dir(root)
    classes = _classes(train_dir) if with_train else _checked_classes(train_dir)
    # List both splits before decoding either, so layout mistakes surface in a second.
    train_listed = _files(train_dir, classes, True) if with_train else None
    test_dir = _test_dir(root)
    test_listed = _files(test_dir, classes, False)
    if train_listed is not None:
        splits = {train_dir.name: train_listed, test_dir.name: test_listed}
        _refuse_one_file_in_two_places(splits, classes)
    # Image folders are normalised by data.mean/std or ImageNet's, never by statistics taken
    # over the whole split: decode only the images data.max_*_samples keeps (the ones
    # load_dataset would keep), so a quick run on a large folder of photos does not decode
    # them all.
    train, unreadable_train = (
        (None, None)
        if train_listed is None
        else _decoded(train_dir, *kept_files(*train_listed, cfg.max_train_samples), cfg)
    )
    test, unreadable_test = _decoded(test_dir, *kept_files(*test_listed, cfg.max_test_samples), cfg)
    unreadable = UndecodableImages.together([unreadable_train, unreadable_test])
    if unreadable is not None:
        raise unreadable
    assert test is not None
    if train is None and cfg.image_size is None:
        # Training refuses test images of another size than its own; so does scoring, from
        # the header of the training image the size is taken from.
        height, width = native_size(cfg)
        if test.images.shape[2:] != (height, width):
            raise sizes_differ(cfg.name, (height, width), test.images.shape[1:])
    return train, test, classes


def _decoded(
    split_dir: Path, paths: list[Path], labels: list[int], cfg: DataConfig
) -> tuple[ImageSet | None, UndecodableImages | None]:
    """The split, or the files of it that cannot be decoded: returned, not raised, so that
    those of both splits are named in one line."""
    try:
        split = decode_split(paths, labels, cfg.image_size, cfg.channels or 3)
    except UndecodableImages as unreadable:
        return None, unreadable
    split.files_digest = files_digest(split_dir, paths, labels)
    return split, None


def files_digest(split_dir: Path, paths: list[Path], labels: list[int]) -> str:
    """sha256 of each file's path under `split_dir`, class and size in bytes: what tells a
    resumed run, or an export, that the folder holds other images than the run was trained
    and scored on (added, removed, renamed, moved to another class, or replaced by another
    image, which is all but never the same size). Sizes, not contents, so that it costs a
    listing; and not the decoded pixels, so that it reads the same on another machine."""
    digest = hashlib.sha256()
    for path, label in zip(paths, labels, strict=True):
        try:
            size = path.stat().st_size
        except OSError:  # gone since it was decoded: a size no file has
            size = -1
        name = path.relative_to(split_dir).as_posix()
        digest.update(f"{label}\t{name}\t{size}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
