"""Reading image files: a file that cannot be decoded is named; a data.root that is not a
folder is named with the variable or folder it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compressor.data.files import (
    decode_images,
    has_images,
    image_size,
    list_images,
    require_root,
)
from compressor.errors import UserError
from compressor.recipe import DataConfig, parse_recipe
from tests.data.image_files import load_error, make_imagefolder, save_image


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    message = load_error(DataConfig(name="imagefolder", root=root))
    assert "cannot decode image" in message and "broken.jpg" in message


def test_every_undecodable_image_of_a_split_is_named_at_once(tmp_path: Path) -> None:
    """One per run took as many runs as there were bad files to find them all."""
    root = make_imagefolder(tmp_path)
    dog = root / "train" / "dog"
    for name in ("bad1.jpg", "bad2.jpg", "bad3.jpg", "bad4.jpg"):
        (dog / name).write_bytes(b"\xff\xd8 this is not a JPEG")
    (dog / "empty.png").write_bytes(b"")
    (root / "train" / "cat" / "a.png").write_bytes(b"")  # the first file, which sets the size
    message = load_error(DataConfig(name="imagefolder", root=root))
    assert message == (
        f"cannot decode 6 images: {root / 'train' / 'cat' / 'a.png'} (an empty file (0 bytes)), "
        f"{dog / 'bad1.jpg'} (cannot identify image file), {dog / 'bad2.jpg'} (cannot identify "
        "image file) and 3 more; fix or delete the files"
    )
    (root / "train" / "cat" / "a.png").unlink()
    for bad in dog.glob("bad*.jpg"):
        bad.unlink()
    assert load_error(DataConfig(name="imagefolder", root=root)) == (
        f"cannot decode image {dog / 'empty.png'}: an empty file (0 bytes); fix or delete the file"
    )


def test_undecodable_images_of_both_splits_are_named_in_one_line(tmp_path: Path) -> None:
    """Named a split at a time, the test split's came out only once the training split's
    were fixed, after a second run's decoding."""
    root = make_imagefolder(tmp_path)
    (root / "train" / "dog" / "zero.png").write_bytes(b"")
    test_split = root / "val"
    (test_split / "cat" / "zero.png").write_bytes(b"")
    assert load_error(DataConfig(name="imagefolder", root=root)) == (
        f"cannot decode 2 images: {root / 'train' / 'dog' / 'zero.png'} (an empty file (0 "
        f"bytes)), {test_split / 'cat' / 'zero.png'} (an empty file (0 bytes)); fix or delete "
        "the files"
    )


def test_an_image_that_cannot_be_opened_is_named_with_the_systems_reason(tmp_path: Path) -> None:
    """Gone since it was listed (or unreadable): the reason read "No such file or directory:"
    with the path cut out after its colon."""
    with pytest.raises(UserError) as caught:
        decode_images([tmp_path / "gone.png"], None)
    assert str(caught.value) == (
        f"cannot decode image {tmp_path / 'gone.png'}: No such file or directory; fix or delete "
        "the file"
    )


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped_to_white(tmp_path: Path) -> None:
    """PIL's convert("RGB") clips 16-bit values at 255: mid-grey read as white."""
    levels = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    pixels = decode_images([tmp_path / "grey16.png"], None)
    assert pixels.shape == (1, 3, 1, 4)
    assert pixels[0, :, 0].tolist() == [[0, 1, 128, 255]] * 3


@pytest.mark.parametrize("maxval", [65535, 1023])
def test_a_16_bit_pgm_is_scaled_to_8_bits_by_its_maxval(tmp_path: Path, maxval: int) -> None:
    """Pillow opens it as a 32-bit integer image (mode I), which was refused as one whose
    scale is unknown, telling the user to save it as 16-bit; a dark one would have passed
    unscaled."""
    levels = np.array([[0, maxval // 2, maxval]], dtype=">u2")
    path = tmp_path / "grey16.pgm"
    path.write_bytes(b"P5\n3 1\n%d\n" % maxval + levels.tobytes())
    assert Image.open(path).mode == "I"
    assert decode_images([path], None)[0, :, 0].tolist() == [[0, 127, 255]] * 3  # 127.4


@pytest.mark.filterwarnings("error")
def test_a_large_photo_is_read_without_pils_warning_that_names_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over PIL's pixel limit (as a 108-megapixel photo is), PIL warned of a decompression
    bomb in a raw Python warning line without the file's name."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    save_image(tmp_path / "large.png", (12, 12))
    assert image_size(tmp_path / "large.png") == (12, 12)
    assert decode_images([tmp_path / "large.png"], 4).shape == (1, 3, 4, 4)


@pytest.mark.filterwarnings("error")
def test_a_palette_image_with_transparency_reads_without_a_warning(tmp_path: Path) -> None:
    """PIL's warning for it names no file, and the pixels are the palette's colours anyway."""
    palette = Image.new("P", (2, 2))
    palette.putpalette([value % 256 for value in range(768)])
    palette.putdata([0, 1, 2, 255])
    palette.info["transparency"] = bytes(range(256))
    palette.save(tmp_path / "palette.png")
    pixels = decode_images([tmp_path / "palette.png"], None)
    colours = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [253, 254, 255]]
    assert pixels[0].permute(1, 2, 0).reshape(4, 3).tolist() == colours


def test_images_of_unknown_scale_are_refused_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(UserError, match=r"float\.tiff: a floating-point \(mode F\) image"):
        decode_images([tmp_path / "float.tiff"], None)
    wide = np.array([[0, 128, 255, 1000]], dtype=np.int32)
    Image.fromarray(wide).save(tmp_path / "wide.tiff")
    with pytest.raises(UserError, match=r"wide\.tiff: a 32-bit integer \(mode I\) image"):
        decode_images([tmp_path / "wide.tiff"], None)
    # 8-bit values in a 32-bit file read as they are.
    Image.fromarray(wide[:, :3]).save(tmp_path / "narrow.tiff")
    assert decode_images([tmp_path / "narrow.tiff"], None)[0, :, 0].tolist() == [[0, 128, 255]] * 3


def test_image_size_reads_the_header_height_first(tmp_path: Path) -> None:
    save_image(tmp_path / "wide.png", size=(40, 24))
    assert image_size(tmp_path / "wide.png") == (24, 40)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(UserError, match=r"cannot decode image .*broken\.jpg.*fix or delete"):
        image_size(tmp_path / "broken.jpg")


def test_has_images_skips_what_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "._x.png").write_bytes(b"macOS metadata")
    assert not has_images(tmp_path / "a")
    save_image(tmp_path / "a" / "deep" / "x.png")
    assert has_images(tmp_path / "a")


def test_linked_folders_are_followed_once_and_hidden_folders_skipped(tmp_path: Path) -> None:
    """As torchvision's ImageFolder: a linked folder of images is read (it was dropped), a
    hidden one is not (`.thumbs/` copies were trained on), and a link loop ends."""
    cat = tmp_path / "train" / "cat"
    save_image(cat / "a.png")
    save_image(tmp_path / "elsewhere" / "b.png")
    (cat / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    save_image(cat / ".thumbs" / "a.png")
    (cat / "loop").symlink_to(cat, target_is_directory=True)
    found = list_images(tmp_path / "train")
    assert found == [cat / "a.png", cat / "more" / "b.png"]


def test_a_missing_root_names_the_variable_that_gave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMPRESSOR_DATA_ROOT=mydata: the user sees which folder that was read from, and which
    setting to change."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", "mydata")
    data = {"name": "cifar10", "root": "${COMPRESSOR_DATA_ROOT:-../data}"}
    recipe = parse_recipe({"student": {"arch": "resnet8"}, "data": data}, base_dir=tmp_path / "r")
    with pytest.raises(UserError) as caught:
        require_root(recipe.data)
    assert str(caught.value) == (
        f"data.root {tmp_path / 'mydata'} (from $COMPRESSOR_DATA_ROOT=mydata, read from the "
        "working folder) does not exist; set $COMPRESSOR_DATA_ROOT to the data set's folder, "
        "or point data.root at it"
    )


def test_a_root_from_the_recipe_says_it_was_read_from_the_recipe_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPRESSOR_DATA_ROOT", raising=False)
    (tmp_path / "data").write_text("not a folder")
    data = {"name": "cifar10", "root": "${COMPRESSOR_DATA_ROOT:-../data}"}
    recipe = parse_recipe({"student": {"arch": "resnet8"}, "data": data}, base_dir=tmp_path / "r")
    with pytest.raises(UserError) as caught:
        require_root(recipe.data)
    assert str(caught.value) == (
        f"data.root {tmp_path / 'data'} ('../data' read from the recipe's folder; "
        "$COMPRESSOR_DATA_ROOT is not set) is a file, not a directory; set "
        "$COMPRESSOR_DATA_ROOT to the data set's folder, or point data.root at it"
    )
