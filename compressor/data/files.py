"""Shared file handling for readers: locating data.root and decoding image files once.

Decoding happens at load time only; the training loop never sees a file or PIL image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from compressor.data.sets import ImageSet, size_text, subset_indices
from compressor.errors import UserError
from compressor.recipe import DATA_ROOT_ENV, DataConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_DECODE_CHUNK = 256


def require_root(cfg: DataConfig) -> Path:
    """`cfg.root` as an existing directory, or a UserError that says how to set it."""
    if cfg.root is None:
        raise UserError(
            f"data.root is not set for data set {cfg.name!r}; set data.root in the recipe "
            f"or {DATA_ROOT_ENV}"
        )
    root = Path(cfg.root)
    if not root.exists():
        raise UserError(f"{root_text(cfg)} does not exist; {_how_to_point_root(cfg)}")
    if not root.is_dir():
        raise UserError(f"{root_text(cfg)} is a file, not a directory; {_how_to_point_root(cfg)}")
    return root


def root_text(cfg: DataConfig) -> str:
    """'data.root PATH', with the variable or folder it came from: a user who set
    $COMPRESSOR_DATA_ROOT=data sees which folder that was read from."""
    return f"data.root {cfg.root}{cfg.path_note('root')}"


def _how_to_point_root(cfg: DataConfig) -> str:
    """The fix names the variable to set where one gave the path, or could have."""
    source = cfg.path_source("root")
    variable = (source.variable or next(iter(source.unset), None)) if source else None
    if variable:
        return f"set ${variable} to the data set's folder, or point data.root at it"
    return (
        "point data.root in the recipe at the data set's folder (a recipe without data.root "
        f"takes ${DATA_ROOT_ENV})"
    )


def list_images(directory: Path) -> list[Path]:
    """Image files under `directory` (recursively), sorted so the order is reproducible."""
    return sorted(_image_files(directory))


def has_images(directory: Path) -> bool:
    """Is there an image file under `directory`? Stops at the first one, so checking a
    recipe does not list a large folder of photos."""
    return next(_image_files(directory), None) is not None


def unlistable(folder: Path | str, error: OSError) -> UserError:
    """A data folder that cannot be listed (no read permission, an I/O error): said as such,
    since a folder skipped or reported as empty sends the user looking at its images."""
    return UserError(
        f"{folder}: cannot list this data folder ({error.strerror or error}); make it readable "
        "(permissions: `chmod -R a+rX`), or move it out of the data"
    )


def list_folder(folder: Path) -> list[Path]:
    """`folder`'s entries, or one line saying why they cannot be listed."""
    try:
        return list(folder.iterdir())
    except OSError as error:
        raise unlistable(folder, error) from None


def dangling_link(path: Path) -> UserError:
    """A link to nothing where data should be: skipped, its image (or class) was missing
    from the data set without a word."""
    return UserError(
        f"{path}: a link to {os.readlink(path)}, which does not exist; point it at the data, "
        "or delete it"
    )


def _refuse_unlistable(error: OSError) -> None:
    raise unlistable(error.filename, error)


def _image_files(directory: Path) -> Iterator[Path]:
    """Image files under `directory` (recursively), in the file system's order.

    Hidden files and folders are skipped, as hidden class folders are: macOS copies leave
    `._name.jpg` AppleDouble files next to the real images (they would fail to decode), and
    `.thumbs/` holds copies. Linked folders are followed, as torchvision's ImageFolder
    follows them (Path.rglob did not), each real folder once, so a link loop ends.
    """
    visited: set[tuple[int, int]] = set()
    # A folder os.walk cannot list was skipped with its images, and the split came out
    # smaller than the folder without a word.
    for root, folders, files in os.walk(directory, onerror=_refuse_unlistable, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in visited:
            folders.clear()
            continue
        visited.add((status.st_dev, status.st_ino))
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in files:
            path = Path(root, name)
            image = not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
            if image and path.is_file():
                yield path
            elif image and path.is_symlink() and not path.exists():
                raise dangling_link(path)


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] to [N, C, size, size] (bilinear, antialiased), as uint8.

    Works in chunks so the float32 intermediate stays small whatever N is.
    """
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True)
        out[start : start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


_UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)


# 16-bit grayscale (PNG, TIFF): PIL's convert("RGB") clips its values to 255 instead of
# scaling them, so mid-grey became white without a word.
_16_BIT_GRAYSCALE = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


def _read_pixels(path: Path, channels: int) -> np.ndarray:
    """One image file as uint8 [channels, H, W]: 3, grayscale, palette and RGBA become RGB;
    1, every image becomes grayscale (PIL's ITU-R 601 luma). 16-bit grayscale is scaled to 8
    bits. A floating-point image, or a 32-bit integer one with values past 255, has no known
    scale: refused, not clipped."""
    try:
        with Image.open(path) as image:
            # Pillow opens a PGM whose maxval passes 255 as mode I, scaled to 0–65535.
            if image.mode in _16_BIT_GRAYSCALE or (image.mode, image.format) == ("I", "PPM"):
                gray = np.asarray(image).astype(np.float64) / 257.0  # 65535 → 255
                eight = np.rint(gray).astype(np.uint8)
                return np.repeat(eight[None], channels, axis=0)
            if image.mode == "F" or (image.mode == "I" and image.getextrema()[1] > 255):
                kind = "a floating-point" if image.mode == "F" else "a 32-bit integer"
                raise Undecodable(
                    path,
                    f"{kind} (mode {image.mode}) image, whose pixel scale is unknown; save it "
                    "as an 8- or 16-bit image",
                )
            # A palette image with per-entry transparency: converted straight to RGB, PIL
            # warns "should be converted to RGBA" once, naming no file; through RGBA the
            # pixels are the same and nothing is printed.
            transparent = image.mode == "P" and "transparency" in image.info
            opaque = image.convert("RGBA") if transparent else image
            if channels == 1:
                return np.asarray(opaque.convert("L"))[None]
            rgb = np.asarray(opaque.convert("RGB"))
    except _UNREADABLE as error:
        raise _undecodable(path, error) from None
    return rgb.transpose(2, 0, 1)


@contextmanager
def _quiet_about_large_images() -> Iterator[None]:
    """PIL warns of an image over Image.MAX_IMAGE_PIXELS (89 M pixels: a 108-megapixel phone
    photo) as a possible decompression bomb, in a line naming no file; a data set's own photos
    are decoded and resized as the recipe says. One over twice that PIL refuses, and it is
    named as undecodable. Warning filters are process-wide: set where the pool is started."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


@_quiet_about_large_images()
def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels: what
    checking a recipe needs to know of a folder of photos, in milliseconds."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except _UNREADABLE as error:
        raise _undecodable(path, error) from None
    return height, width


class Undecodable(UserError):
    """An image file PIL cannot read; `reason` is what it is without the advice."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot decode image {path}: {reason}; fix or delete the file")


def _undecodable(path: Path, error: Exception) -> Undecodable:
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if isinstance(error, OSError) and error.strerror:  # opening it failed: the system's words
        reason = error.strerror  # "[Errno 13] Permission denied: '/x/a.png'" read "…denied:"
    else:  # PIL's reason repeats the path ("cannot identify image file '/x/a.png'"): once
        reason = str(error).replace(f" {str(path)!r}", "").replace(f" '{path}'", "")
    return Undecodable(path, "an empty file (0 bytes)" if empty else reason)


class UndecodableImages(UserError):
    """Every unreadable file of a split (or of several: `together`) in one line, so a folder
    with several is fixed in one go rather than one run each."""

    def __init__(self, failures: list[Undecodable]) -> None:
        self.failures = sorted(failures, key=lambda failure: str(failure.path))
        if len(self.failures) == 1:
            super().__init__(str(self.failures[0]))
            return
        shown = ", ".join(f"{each.path} ({each.reason})" for each in self.failures[:3])
        more = f" and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(
            f"cannot decode {len(self.failures)} images: {shown}{more}; fix or delete the files"
        )

    @staticmethod
    def together(errors: Sequence[UndecodableImages | None]) -> UndecodableImages | None:
        """The failures of several splits as one error; None when there were none."""
        failures = [failure for error in errors if error is not None for failure in error.failures]
        return UndecodableImages(failures) if failures else None


def _first_readable(
    paths: Sequence[Path], failures: list[Undecodable], channels: int
) -> tuple[int, np.ndarray]:
    """The first image that decodes, which sets the split's size, and its index; those
    before it go to `failures`. None decoding: the failures, all told."""
    for index, path in enumerate(paths):
        try:
            return index, _read_pixels(path, channels)
        except Undecodable as failure:
            failures.append(failure)
    raise UndecodableImages(failures)


@_quiet_about_large_images()
def decode_images(paths: Sequence[Path], image_size: int | None, channels: int = 3) -> torch.Tensor:
    """Decode image files into one uint8 tensor [N, channels, H, W] using a thread pool.

    PIL releases the GIL while decoding, so threads scale over cores without the cost of
    shipping arrays between processes. Every image must have the size of the first readable
    one, unless `image_size` is given: then each image that differs is resized to it. Files
    that cannot be decoded are all named at the end, in one line.
    """
    failures: list[Undecodable] = []  # appended from the pool's threads (atomic in CPython)
    start, first = _first_readable(paths, failures, channels)
    if image_size is not None:
        height = width = image_size
    else:
        height, width = first.shape[1:]
    out = torch.empty((len(paths), channels, height, width), dtype=torch.uint8)
    frames = out.numpy()  # same memory: numpy copies PIL's read-only arrays straight in

    def store(index: int, pixels: np.ndarray) -> None:
        if pixels.shape[1:] == (height, width):
            frames[index] = pixels
        elif image_size is not None:
            out[index] = resize_images(torch.tensor(pixels)[None], image_size)[0]
        else:
            raise UserError(
                f"image {paths[index]} is {size_text(*pixels.shape[1:])} but "
                f"{paths[start]} is {size_text(height, width)}; set data.image_size to resize "
                "all images to one size"
            )

    def decode_chunk(chunk: int) -> None:
        for index in range(chunk, min(chunk + _DECODE_CHUNK, len(paths))):
            try:
                pixels = _read_pixels(paths[index], channels)
            except Undecodable as failure:
                failures.append(failure)
                continue
            store(index, pixels)

    store(start, first)
    workers = min(16, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = range(start + 1, len(paths), _DECODE_CHUNK)
        futures = [pool.submit(decode_chunk, chunk) for chunk in chunks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:  # images of another size: report it now
                future.cancel()
            raise
    if failures:
        raise UndecodableImages(failures)
    return out


def kept_files(
    paths: list[Path], labels: list[int], count: int | None
) -> tuple[list[Path], list[int]]:
    """The files data.max_*_samples keeps (`subset_indices`, as `load_dataset` would take
    them from the decoded split), chosen before decoding: a quick run on a folder of 100k
    JPEGs decodes only the images it keeps."""
    kept = subset_indices(np.asarray(labels), count)
    if kept is None:
        return paths, labels
    return [paths[i] for i in kept], [labels[i] for i in kept]


def decode_split(
    paths: Sequence[Path], labels: Sequence[int], image_size: int | None, channels: int = 3
) -> ImageSet:
    """A split of image files and their labels, decoded (`decode_images`)."""
    images = decode_images(paths, image_size, channels)
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64))
