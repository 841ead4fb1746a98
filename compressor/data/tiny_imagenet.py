"""Tiny ImageNet (200 classes, 64x64 RGB): JPEG files decoded once at load time.

Layout (as unpacked from the official archive; data.root may also be its parent):
    wnids.txt                        one WordNet id per line = the classes, in label order
    words.txt                        optional: "<wnid>\\t<names>" for readable class names
    train/<wnid>/images/*.JPEG       500 per class
    val/images/*.JPEG + val/val_annotations.txt ("<file>\\t<wnid>\\t<bbox...>"), 50 per class
The unlabeled test/ folder is not used; val is the test split.
"""

from __future__ import annotations

from pathlib import Path

from compressor.data.files import (
    decode_split,
    has_images,
    kept_files,
    list_folder,
    list_images,
    require_root,
    root_text,
)
from compressor.data.sets import ImageSet, first_few
from compressor.errors import UserError
from compressor.recipe import DataConfig

FOLDER = "tiny-imagenet-200"


def _find_root(cfg: DataConfig) -> Path:
    root = require_root(cfg)
    for candidate in (root, root / FOLDER):
        if (candidate / "wnids.txt").is_file():
            return candidate
    raise UserError(
        f"{root_text(cfg)} is not a Tiny ImageNet directory: no wnids.txt there or in "
        f"{root / FOLDER}; expected wnids.txt, train/<wnid>/images/, val/val_annotations.txt"
    )


def _lines(path: Path) -> list[str]:
    """A listing's lines; one that is not UTF-8 text (damaged, or another file) is bad data.
    A byte-order mark (a file saved by Windows Notepad) is dropped: kept, it became part of
    the first WordNet id, an invisible character in a folder name the user sees is there."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); the file is "
            "damaged or not Tiny ImageNet's: download the data set again"
        ) from None


def _wnids(root: Path) -> list[str]:
    path = root / "wnids.txt"
    wnids = [line.strip() for line in _lines(path) if line.strip()]
    if len(set(wnids)) != len(wnids):
        raise UserError(f"{path} lists a class twice; each WordNet id must appear once")
    if len(wnids) < 2:
        raise UserError(f"{path} lists {len(wnids)} class(es); classification needs at least 2")
    return wnids


def num_classes(cfg: DataConfig) -> int:
    """The class count a recipe is checked against, refusing what loading refuses first: a
    class without training images, a training folder wnids.txt lacks, a validation listing
    that is missing or names images that are not there (checked, not decoded)."""
    root = _find_root(cfg)
    wnids = _wnids(root)
    _check_train_folders(root, wnids)
    _val_files(root, wnids)
    return len(wnids)


def _class_names(root: Path, wnids: list[str]) -> list[str]:
    """First synonym from words.txt ("goldfish, Carassius auratus" -> "goldfish"), else wnid."""
    words: dict[str, str] = {}
    if (root / "words.txt").is_file():
        # Display names only: a byte that is not UTF-8 is shown replaced, not a stop.
        text = (root / "words.txt").read_text(encoding="utf-8-sig", errors="replace")
        for line in text.splitlines():
            wnid, _, synonyms = line.partition("\t")
            words[wnid.strip()] = synonyms.split(",")[0].strip()
    names = [words.get(wnid) or wnid for wnid in wnids]
    # Two classes under one name ("frog" twice) could not be told apart in a report or by a
    # user of the ONNX file: each such name carries its WordNet id.
    shared = {name for name in names if names.count(name) > 1}
    return [
        f"{name} ({wnid})" if name in shared else name
        for name, wnid in zip(names, wnids, strict=True)
    ]


def _train_folder(root: Path, wnid: str) -> Path:
    return root / "train" / wnid / "images"


def _no_training_images(folder: Path) -> UserError:
    return UserError(f"{folder} has no images; every class in wnids.txt needs training images")


def _refuse_unlisted_classes(root: Path, wnids: list[str]) -> None:
    """A train/ folder wnids.txt does not list would be a class dropped without a word."""
    train = root / "train"
    listed = set(wnids)
    folders = list_folder(train) if train.is_dir() else []
    unlisted = sorted(
        p.name
        for p in folders
        if p.is_dir() and not p.name.startswith(".") and p.name not in listed
    )
    if unlisted:
        raise UserError(
            f"{train} has class folders wnids.txt does not list ({first_few(unlisted)}); add "
            "their WordNet "
            "ids to wnids.txt, or move the folders out of train/"
        )


def _check_train_folders(root: Path, wnids: list[str]) -> None:
    """Refuse a class without training images, as reading the training split does, from the
    first image found in each folder: scoring on the test split alone lists no more."""
    _refuse_unlisted_classes(root, wnids)
    for wnid in wnids:
        folder = _train_folder(root, wnid)
        if not (folder.is_dir() and has_images(folder)):
            raise _no_training_images(folder)


def _train_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    _refuse_unlisted_classes(root, wnids)
    paths: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = _train_folder(root, wnid)
        files = list_images(folder) if folder.is_dir() else []
        if not files:
            raise _no_training_images(folder)
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _val_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise UserError(f"{annotations} is missing; it labels the validation images")
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    for number, line in enumerate(_lines(annotations), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in label_of:
            raise UserError(
                f"{annotations} line {number}: expected '<file>\\t<wnid>...' with a wnid from "
                f"wnids.txt, got {line.strip()!r}"
            )
        path = root / "val" / "images" / fields[0].strip()
        if not path.is_file():
            raise UserError(
                f"{annotations} line {number}: names {fields[0].strip()!r}, which is not in "
                f"{path.parent}; put the image back, or download the data set again"
            )
        paths.append(path)
        labels.append(label_of[fields[1].strip()])
    if not paths:
        raise UserError(f"{annotations} lists no images; the test split would be empty")
    return paths, labels


def read(cfg: DataConfig, with_train: bool = True) -> tuple[ImageSet | None, ImageSet, list[str]]:
    """Decode the val split (10k JPEGs for the full set) and, when `with_train`, the training
    split (100k); of each, only the images data.max_*_samples keeps."""
    root = _find_root(cfg)
    wnids = _wnids(root)
    # List both splits before decoding either, so layout mistakes surface in a second.
    if not with_train:
        _check_train_folders(root, wnids)
    train_listed = _train_files(root, wnids) if with_train else None
    val_paths, val_labels = _val_files(root, wnids)
    train = (
        None
        if train_listed is None
        else decode_split(*kept_files(*train_listed, cfg.max_train_samples), cfg.image_size)
    )
    val = decode_split(*kept_files(val_paths, val_labels, cfg.max_test_samples), cfg.image_size)
    return train, val, _class_names(root, wnids)
