"""`load_dataset`: one reader per data set name, then the steps every data set shares.

A reader only turns files into (train, test, class names) at native size. Resizing,
subsetting, checks and the resolution of defaults happen here once, so every data set
behaves the same way and a new reader is a single small module plus one table row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from compressor.data import cifar, digits, imagefolder, tiny_imagenet
from compressor.data.files import resize_images
from compressor.data.sets import (
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Dataset,
    EvalData,
    ImageSet,
    size_text,
    sizes_differ,
    subset_indices,
)
from compressor.errors import ChannelsDiffer, UserError
from compressor.recipe import DataConfig

# (cfg, with_train) -> (train, or None when not asked for; test; class names)
_Read = Callable[[DataConfig, bool], tuple[ImageSet | None, ImageSet, list[str]]]


@dataclass(frozen=True)
class _Reader:
    read: _Read
    num_classes: Callable[[DataConfig], int]
    native_size: Callable[[DataConfig], tuple[int, int]]  # (height, width), data not decoded
    flip: bool
    mean: tuple[float, ...] | None = IMAGENET_MEAN  # None: measured on the training split
    std: tuple[float, ...] | None = IMAGENET_STD
    channels: int = 3  # image files are converted to RGB


def _square(side: int) -> Callable[[DataConfig], tuple[int, int]]:
    """The native size of a data set whose images all have one published side."""
    return lambda _cfg: (side, side)


# ImageNet statistics wherever a pretrained teacher is likely (the shared CIFAR teachers were
# trained with them). Digits are not mirror-symmetric, so no flip; their statistics are
# measured on load (microseconds for 1437 8x8 images), which keeps them right if the scaling
# or the split ever changes instead of leaving stale constants behind.
READERS: dict[str, _Reader] = {
    "digits": _Reader(
        digits.read, digits.num_classes, _square(8), flip=False, mean=None, std=None, channels=1
    ),
    "cifar10": _Reader(cifar.read, cifar.num_classes, _square(32), flip=True),
    "cifar100": _Reader(cifar.read, cifar.num_classes, _square(32), flip=True),
    "tiny_imagenet": _Reader(tiny_imagenet.read, tiny_imagenet.num_classes, _square(64), flip=True),
    "imagefolder": _Reader(
        imagefolder.read, imagefolder.num_classes, imagefolder.native_size, flip=True
    ),
}


def dataset_num_classes(cfg: DataConfig) -> int:
    """Number of classes without decoding images, for checking a recipe before training.

    Raises UserError when data.root is missing or does not hold the data set.
    """
    return READERS[cfg.name].num_classes(cfg)


def dataset_channels(cfg: DataConfig) -> int:
    """Image channels without reading the data, for building a teacher to check a recipe:
    the data set's own, or an image folder's data.channels."""
    return cfg.channels or READERS[cfg.name].channels


def dataset_image_size(cfg: DataConfig) -> tuple[int, int]:
    """(height, width) of the images training will see, without decoding them: data.image_size,
    else the data set's native size (an image folder's from one image's header).

    Raises UserError when data.root does not hold the data set or that image is unreadable.
    """
    if cfg.image_size is not None:
        return cfg.image_size, cfg.image_size
    return READERS[cfg.name].native_size(cfg)


def with_channels_hint(error: UserError, cfg: DataConfig) -> UserError:
    """`error`, and where it is a model taking another channel count than an image folder
    is read with, the data.channels setting that reads it so on the line that says so."""
    if not isinstance(error, ChannelsDiffer) or cfg.name != "imagefolder":
        return error
    if error.channels == 1:
        hint = "; or set data.channels: 1 to read the image folder as grayscale"
    elif error.channels == 3 and cfg.channels == 1:
        hint = "; or leave out data.channels: 1 to read the image folder as RGB"
    else:
        return error
    lines = [line + hint if i == error.line else line for i, line in enumerate(error.lines)]
    hinted = UserError(*lines)
    hinted.__cause__ = error.__cause__
    return hinted


def check_stats_channels(cfg: DataConfig) -> None:
    """data.mean/std give one value per channel of the data set, whose channel count is known
    without reading the data: `recipe validate` refuses what loading would, and loading
    refuses it before minutes of decoding."""
    channels = dataset_channels(cfg)
    if cfg.mean is not None and len(cfg.mean) != channels:
        read_as = f" (read so by data.channels: {cfg.channels})" if cfg.channels else ""
        raise UserError(
            f"data.mean and data.std have {_count(len(cfg.mean), 'value')} but {cfg.name} "
            f"images have {_count(channels, 'channel')}{read_as}; give one value per channel"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def default_crop_padding(height: int, width: int) -> int:
    """One eighth of the image side: the classic 1 / 4 / 8 pixels for digits (8 px), CIFAR
    (32 px) and Tiny ImageNet (64 px). Scaling with the side keeps the same relative jitter
    when data.image_size changes the resolution."""
    return min(height, width) // 8


def check_crop_padding(cfg: DataConfig, height: int, width: int) -> None:
    """A padding of the image's side or more lets a random crop hold no pixel of the image:
    such batches are blank, and the run trains at chance without a word."""
    side, size = min(height, width), size_text(height, width)
    if cfg.crop_padding is not None and cfg.crop_padding >= side:
        raise UserError(
            f"data.crop_padding: {cfg.crop_padding} pads {size} images by their side or more, so "
            f"a random crop may hold none of the image; use at most {side - 1} "
            f"(leave it out for the default, {default_crop_padding(height, width)})"
        )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images, on [0, 1] pixels."""
    pixels = images.to(torch.float64).div_(255.0)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3), correction=0)
    return tuple(mean.tolist()), tuple(std.tolist())


def _resized(split: ImageSet, size: int | None) -> ImageSet:
    if size is None or split.images.shape[2:] == (size, size):
        return split
    return ImageSet(resize_images(split.images, size), split.labels, split.files_digest)


def _subset(split: ImageSet, count: int | None) -> ImageSet:
    kept = subset_indices(split.labels.numpy(), count)
    return split if kept is None else split.select(kept)


def _check(cfg: DataConfig, splits: dict[str, ImageSet], classes: list[str]) -> None:
    if len(classes) < 2:
        raise UserError(f"{cfg.name} has {len(classes)} class(es); classification needs >= 2")
    for split_name, split in splits.items():
        if len(split) == 0:
            raise UserError(f"{cfg.name}: the {split_name} split has no images; add some")


def _check_same_shape(cfg: DataConfig, train: ImageSet, test: ImageSet) -> None:
    if train.images.shape[1:] != test.images.shape[1:]:
        raise sizes_differ(cfg.name, train.images.shape[1:], test.images.shape[1:])


def _given_stats(
    cfg: DataConfig, reader: _Reader
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """data.mean/std, else the data set's published ones; None where they are measured."""
    if cfg.mean is not None and cfg.std is not None:
        return tuple(cfg.mean), tuple(cfg.std)
    if reader.mean is not None and reader.std is not None:
        if dataset_channels(cfg) == 1 < len(reader.mean):  # an image folder read as grayscale
            return IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD
        return reader.mean, reader.std
    return None


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read, check, subset (data.max_*_samples), resize (data.image_size), resolve defaults.

    Subsetting comes before resizing so a quick run never resizes images it then drops.
    Raises UserError, never a traceback, for anything wrong with the data or its location.
    """
    check_stats_channels(cfg)
    reader = READERS[cfg.name]
    train, test, classes = reader.read(cfg, True)
    assert train is not None
    _check(cfg, {"train": train, "test": test}, classes)
    # Else measured on the full native training split, so quick runs normalise like full ones.
    mean, std = _given_stats(cfg, reader) or channel_stats(train.images)
    train = _resized(_subset(train, cfg.max_train_samples), cfg.image_size)
    test = _resized(_subset(test, cfg.max_test_samples), cfg.image_size)
    _check_same_shape(cfg, train, test)
    height, width = train.images.shape[2:]
    check_crop_padding(cfg, height, width)
    return Dataset(
        name=cfg.name,
        train=train,
        test=test,
        classes=classes,
        mean=tuple(mean),
        std=tuple(std),
        crop_padding=_effective_padding(cfg, (height, width)),
        flip=_effective_flip(cfg, reader),
    )


def load_test_split(cfg: DataConfig) -> EvalData:
    """What scoring a model needs (the test split, classes, mean/std), read like
    `load_dataset` reads it but without the training split: minutes of decoding spared on a
    large image folder.

    A data set whose mean/std are measured on its training split (digits: 1437 8x8 images)
    is read whole, so the figures match the ones training normalises with.
    """
    check_stats_channels(cfg)
    reader = READERS[cfg.name]
    stats = _given_stats(cfg, reader)
    if stats is None:
        return load_dataset(cfg)
    _, test, classes = reader.read(cfg, False)
    _check(cfg, {"test": test}, classes)
    test = _resized(_subset(test, cfg.max_test_samples), cfg.image_size)
    mean, std = stats
    return EvalData(
        name=cfg.name,
        test=test,
        classes=classes,
        mean=tuple(mean),
        std=tuple(std),
    )


def with_same_effect_written_as(started: DataConfig, current: DataConfig) -> DataConfig:
    """`started` with each data setting that does what `current`'s does written as `current`
    writes it: `flip: false` on digits, or CIFAR's own mean and std spelled out, is the
    data set's default, and a resume must not refuse it as a change of recipe. A size that
    cannot be told without the data (an image folder that no longer reads) is left as
    written, and differs as written."""
    if started.name != current.name:
        return started
    reader = READERS[started.name]
    same: dict[str, object] = {}
    if _effective_flip(started, reader) == _effective_flip(current, reader):
        same["flip"] = current.flip
    if dataset_channels(started) == dataset_channels(current):
        same["channels"] = current.channels
    stats = _given_stats(started, reader)
    if stats is not None and stats == _given_stats(current, reader):
        same.update(mean=current.mean, std=current.std)
    if (started.image_size, started.crop_padding) != (current.image_size, current.crop_padding):
        size = _training_size(started, reader)
        if size is not None and size == _training_size(current, reader):
            same["image_size"] = current.image_size
            if _effective_padding(started, size) == _effective_padding(current, size):
                same["crop_padding"] = current.crop_padding
    return started.model_copy(update=same)


def _effective_flip(cfg: DataConfig, reader: _Reader) -> bool:
    return cfg.flip if cfg.flip is not None else reader.flip


def _training_size(cfg: DataConfig, reader: _Reader) -> tuple[int, int] | None:
    """(height, width) of the images training sees; None where the data cannot say."""
    if cfg.image_size is not None:
        return cfg.image_size, cfg.image_size
    try:
        return reader.native_size(cfg)
    except UserError:
        return None


def _effective_padding(cfg: DataConfig, size: tuple[int, int]) -> int:
    return cfg.crop_padding if cfg.crop_padding is not None else default_crop_padding(*size)
