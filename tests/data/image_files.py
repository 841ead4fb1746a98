"""Small image data sets on disk, as users lay them out: Tiny ImageNet and image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compressor.data import load_dataset
from compressor.errors import UserError
from compressor.recipe import DataConfig

WNIDS = ["n01443537", "n01629819", "n01641577"]


def save_image(
    path: Path, size: tuple[int, int] = (16, 16), value: int = 0, mode: str = "RGB"
) -> None:
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
            save_image(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", value=40 * label, mode=mode
            )
        name = f"val_{label}.JPEG"
        save_image(root / "val" / "images" / name, value=40 * label)
        annotations.append(f"{name}\t{wnid}\t0\t0\t15\t15")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return root


def make_imagefolder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog"), size: tuple[int, int] = (16, 16)
) -> Path:
    """train/ and val/ of each class, images of `size` (width, height)."""
    for label, name in enumerate(classes):
        save_image(root / "train" / name / "a.png", size, value=50 * label)
        save_image(root / "train" / name / "nested" / "b.JPG", size, value=50 * label)
        save_image(root / "val" / name / "c.png", size, value=50 * label)
    (root / "train" / classes[0] / "notes.txt").write_text("not an image")
    (root / "train" / classes[0] / "._a.png").write_bytes(b"macOS metadata, not an image")
    return root


def damage_training_images(root: Path) -> None:
    """Damage every training image of a `make_imagefolder` folder but the first class's a.png,
    whose header alone gives the folder's image size: a command that reads no more than that
    header (scoring on the test split) still works; one that decodes the split fails."""
    header = root / "train" / sorted(p.name for p in (root / "train").iterdir())[0] / "a.png"
    damaged = [p for p in (root / "train").rglob("*") if p.suffix in (".png", ".JPG")]
    for path in damaged:
        if path != header:
            path.write_bytes(b"damaged")


def load_error(config: DataConfig) -> str:
    """The one-line UserError loading `config` must raise."""
    with pytest.raises(UserError) as caught:
        load_dataset(config)
    message = str(caught.value)
    assert "\n" not in message
    return message
