"""The in-memory data set types every reader produces and the engine consumes.

A split is decoded once into a uint8 tensor: 4x smaller than float32, so even Tiny ImageNet
(100k x 3 x 64 x 64 = 1.2 GB) fits on a training GPU, where `BatchLoader` indexes, augments
and normalises whole batches without touching the CPU again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from compressor.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The same for one channel, as torchvision's grayscale models take them: the mean of the three.
IMAGENET_GRAY_MEAN = (0.449,)
IMAGENET_GRAY_STD = (0.226,)


@dataclass
class ImageSet:
    """One split: uint8 images [N, C, H, W] (CPU, contiguous) and int64 labels [N].

    `files_digest` names the files an image folder's split was read from (imagefolder.py),
    so that a run resumed, or exported, later can tell it reads the same images; None for a
    built-in data set, whose files do not change, and for a subset taken after reading.
    """

    images: torch.Tensor
    labels: torch.Tensor
    files_digest: str | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 [{len(self.images)}], got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: torch.Tensor | np.ndarray) -> ImageSet:
        """The samples at `indices`, copied into new contiguous tensors."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return ImageSet(self.images[indices].contiguous(), self.labels[indices].contiguous())


@dataclass
class EvalData:
    """What scoring a model needs: the test split, the class names and the resolved mean/std.

    `compress teacher` and an export without INT8 score on the test split alone; loading
    only this (`load_test_split`) spares them decoding the training split, minutes on a
    large image folder.
    """

    name: str
    test: ImageSet
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image (loading checks that both splits share it)."""
        channels, height, width = self.test.images.shape[1:]
        return channels, height, width


@dataclass
class Dataset(EvalData):
    """Both splits plus everything needed to train on them and to deploy the result.

    mean/std/crop_padding/flip are resolved: the recipe's value when given, else the data
    set's default. They travel with the run (and into the ONNX metadata), so the student is
    always fed the same normalisation it was trained with.
    """

    train: ImageSet
    crop_padding: int
    flip: bool


def class_changes(before: Sequence[str], now: Sequence[str], shown: int = 3) -> str | None:
    """How the class names differ, position by position ("class 0 'cat' is now 'dog'"), or
    None when they are the same. An image folder's classes are its sorted folder names: a
    folder renamed keeps the count, shifts every label after it, and a model scored or
    trained on it learns or is judged against the wrong names without a word."""
    before, now = list(before), list(now)
    if before == now:
        return None
    if len(before) != len(now):
        return f"{len(before)} classes are now {len(now)}"
    moved = [i for i, (old, new) in enumerate(zip(before, now, strict=True)) if old != new]
    return first_few([f"class {i} {before[i]!r} is now {now[i]!r}" for i in moved], shown)


def first_few(items: Sequence[str], shown: int = 3) -> str:
    """ "a, b, c (and 4 more)": a list in an error line, which stays one line however long."""
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


SUBSET_SEED = 0  # fixed, not the recipe seed: max_*_samples must pick the same images every run


def subset_indices(labels: np.ndarray, count: int | None) -> np.ndarray | None:
    """The images data.max_*_samples keeps, class-balanced; None when it keeps them all."""
    if count is None or count >= len(labels):
        return None
    return balanced_indices(labels, count, SUBSET_SEED)


def balanced_indices(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of `count` samples spread as evenly as possible over the classes.

    Round-robin over classes in a seeded shuffle: every class gives its 1st sample, then its
    2nd, ..., so a small class runs out without starving the others. The fixed seed makes the
    subset identical across runs and machines, which is what quick runs and tests compare.
    """
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    shuffled_labels = labels[shuffled]
    by_class = np.argsort(shuffled_labels, kind="stable")
    grouped = shuffled_labels[by_class]
    rank_grouped = np.arange(len(grouped)) - np.searchsorted(grouped, grouped, side="left")
    rank = np.empty_like(rank_grouped)
    rank[by_class] = rank_grouped
    chosen = np.lexsort((shuffled_labels, rank))[:count]
    return np.sort(shuffled[chosen])


def size_text(height: int, width: int) -> str:
    """An image size as image viewers write it, width first ("48x32"), and said so when the
    image is not square: a tensor's shape is height first, and 48 wide must not read as 48
    high."""
    return f"{width}x{height}" + ("" if width == height else " (width x height)")


def image_text(shape: Sequence[int]) -> str:
    """An image shape (channels, height, width) in words: "3-channel 48x32 (width x height)"."""
    channels, height, width = shape
    return f"{channels}-channel {size_text(height, width)}"


def sizes_differ(name: str, train_shape: Sequence[int], test_shape: Sequence[int]) -> UserError:
    """Train and test images (shapes channels, height, width) of different sizes, which one
    model cannot take both of."""
    train_text, test_text = (size_text(*shape[-2:]) for shape in (train_shape, test_shape))
    return UserError(
        f"{name}: train images are {train_text} but test images are {test_text}; set "
        "data.image_size to resize both to one size"
    )
