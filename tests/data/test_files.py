"""Reading image files: a file that cannot be decoded is named."""

from __future__ import annotations

from pathlib import Path

from compressor.recipe import DataConfig
from tests.data.image_files import load_error, make_imagefolder


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    message = load_error(DataConfig(name="imagefolder", root=root))
    assert "cannot decode image" in message and "broken.jpg" in message
