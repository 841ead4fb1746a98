"""Batched crop, flip and normalisation against straightforward per-sample references."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compressor.data.augment import crop, hflip, normalize


def _images(count: int = 6, channels: int = 3, size: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(
        1, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator
    )


def test_crop_cuts_each_window_at_its_offset() -> None:
    images = _images()
    offsets = torch.tensor([[0, 0], [4, 4], [2, 2], [0, 4], [3, 1], [1, 0]])
    out = crop(images, 2, offsets)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = F.pad(images, (2, 2, 2, 2))
    for i, (top, left) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, top : top + 5, left : left + 5])
    assert torch.equal(out[2], images[2])  # centred window = no shift
    assert (out[1, :, -2:, :] == 0).all()  # shifted past the edge: zero padding shows


def test_crop_without_padding_is_identity() -> None:
    images = _images()
    assert crop(images, 0, torch.zeros(6, 2, dtype=torch.int64)) is images


def test_hflip_mirrors_only_masked_samples() -> None:
    images = _images()
    mask = torch.tensor([True, False, True, False, False, True])
    out = hflip(images, mask)
    for i in range(len(images)):
        expected = images[i].flip(-1) if mask[i] else images[i]
        assert torch.equal(out[i], expected)
    assert torch.equal(out[0, :, :, 0], images[0, :, :, -1])


def test_normalize_matches_the_textbook_formula() -> None:
    images = _images()
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    out = normalize(images, mean, std)
    expected = (images.double() / 255 - mean.double()[:, None, None]) / std.double()[:, None, None]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)


def test_normalize_keeps_channels_last() -> None:
    images = _images().contiguous(memory_format=torch.channels_last)
    out = normalize(images, torch.zeros(3), torch.ones(3))
    assert out.is_contiguous(memory_format=torch.channels_last)
