"""BatchLoader: reproducible shuffling and augmentation, DDP rank slices, eval order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compressor.data import BatchLoader, ImageSet

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _split(count: int, size: int = 6) -> ImageSet:
    """Random images whose label is their index, so every batch says which samples it holds."""
    generator = torch.Generator().manual_seed(count)
    images = torch.randint(1, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(count))


def _loader(split: ImageSet, **kwargs: object) -> BatchLoader:
    options: dict[str, object] = dict(batch_size=8, device=CPU, mean=MEAN, std=STD, train=True)
    options.update(kwargs)
    return BatchLoader(split, **options)  # type: ignore[arg-type]


def _epoch(loader: BatchLoader, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    return ((images * std + mean) * 255).round().to(torch.uint8)


def test_same_seed_and_epoch_give_identical_batches() -> None:
    split = _split(50)
    options = dict(crop_padding=2, flip=True, seed=7)
    first, second = _loader(split, **options), _loader(split, **options)
    for epoch in range(3):  # a loader resumed at epoch 3 matches one that ran epochs 0..2
        _epoch(second, epoch)
    for (x1, y1), (x2, y2) in zip(_epoch(first, 3), _epoch(second, 3), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.dtype == torch.float32 and y1.dtype == torch.int64 and x1.shape == (8, 3, 6, 6)


def test_epochs_and_seeds_differ() -> None:
    split = _split(50)
    order = [
        torch.cat([y for _, y in _epoch(_loader(split, seed=s), e)])
        for s, e in [(0, 0), (0, 1), (1, 0)]
    ]
    assert not torch.equal(order[0], order[1]) and not torch.equal(order[0], order[2])


def test_every_sample_once_per_epoch_without_drop_last() -> None:
    loader = _loader(_split(53), drop_last=False)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 7 and len(batches[-1][1]) == 5
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(53))


def test_training_drops_the_last_partial_batch_by_default() -> None:
    loader = _loader(_split(53))
    labels = torch.cat([y for _, y in _epoch(loader)])
    assert len(loader) == 6 and len(labels) == 48 == len(set(labels.tolist()))
    assert len(_loader(_split(5))) == 1  # smaller than one batch: keep it rather than nothing


def test_max_steps_caps_the_epoch() -> None:
    loader = _loader(_split(53), max_steps=2)
    assert len(loader) == len(_epoch(loader)) == 2


def test_rank_slices_are_disjoint_and_form_the_global_batch() -> None:
    split = _split(64)
    options = dict(batch_size=8, crop_padding=1, flip=True, seed=3)
    ranks = [_epoch(_loader(split, rank=r, world_size=2, **options), 2) for r in range(2)]
    single = _epoch(_loader(split, **{**options, "batch_size": 16}), 2)
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 4
    for (x0, y0), (x1, y1), (x, y) in zip(*ranks, single, strict=True):
        assert not set(y0.tolist()) & set(y1.tolist())
        assert torch.equal(torch.cat([y0, y1]), y)
        assert torch.equal(torch.cat([x0, x1]), x)  # same augmentation whatever the rank count


def test_ranks_stay_in_lockstep_on_a_partial_last_batch() -> None:
    split = _split(21)
    ranks = [_epoch(_loader(split, rank=r, world_size=2, drop_last=False)) for r in range(2)]
    assert [len(y) for _, y in ranks[0]] == [len(y) for _, y in ranks[1]] == [8, 3]
    seen = torch.cat([y for batches in ranks for _, y in batches]).tolist()
    assert sorted(set(seen)) == list(range(21)) and len(seen) == 22  # one wrapped-around sample


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_indexed_batches_name_each_sample_by_its_index_in_the_split(train: bool) -> None:
    loader = _loader(_split(21), train=train, crop_padding=1, flip=True, drop_last=False)
    plain, indexed = list(loader), list(loader.indexed())
    assert len(plain) == len(indexed) == 3
    for (x, y), (xi, yi, index) in zip(plain, indexed, strict=True):
        assert torch.equal(x, xi) and torch.equal(y, yi)
        assert torch.equal(index, y)  # the split's label is its index
        assert index.dtype == torch.int64


def test_crops_come_from_the_zero_padded_image() -> None:
    split = _split(40)
    images, labels = _epoch(_loader(split, batch_size=40, crop_padding=2))[0]
    padded = F.pad(split.images, (2, 2, 2, 2))
    pixels = _to_uint8(images)
    shifted = 0
    for sample, label in zip(pixels, labels.tolist(), strict=True):
        windows = [
            (top, left)
            for top in range(5)
            for left in range(5)
            if torch.equal(sample, padded[label, :, top : top + 6, left : left + 6])
        ]
        assert windows, f"sample {label} is no window of its padded image"
        shifted += windows[0] != (2, 2)
    assert shifted > 30  # 24 of 25 offsets move the window


def test_flip_mirrors_about_half_of_the_samples() -> None:
    split = _split(200)
    images, labels = _epoch(_loader(split, batch_size=200, flip=True))[0]
    pixels, originals = _to_uint8(images), split.images[labels]
    flipped = torch.tensor(
        [torch.equal(p, o.flip(-1)) for p, o in zip(pixels, originals, strict=True)]
    )
    same = torch.tensor([torch.equal(p, o) for p, o in zip(pixels, originals, strict=True)])
    assert (flipped ^ same).all()
    assert 70 < int(flipped.sum()) < 130


def test_channels_last_changes_layout_not_values() -> None:
    split = _split(16)
    plain = _epoch(_loader(split, crop_padding=1, flip=True))
    packed = _epoch(_loader(split, crop_padding=1, flip=True, channels_last=True))
    for (x, _), (x_cl, _) in zip(plain, packed, strict=True):
        assert x_cl.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, x_cl)


def test_eval_is_ordered_unaugmented_and_complete() -> None:
    split = _split(21)
    loader = _loader(split, train=False, crop_padding=4, flip=True)
    batches = _epoch(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [8, 8, 5]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(21))
    expected = (split.images / 255.0 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[
        :, None, None
    ]
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), expected, rtol=0, atol=1e-6)


def test_eval_ranks_take_contiguous_shards() -> None:
    split = _split(21)
    shards = [
        torch.cat([y for _, y in _epoch(_loader(split, train=False, rank=r, world_size=2))])
        for r in range(2)
    ]
    assert shards[0].tolist() == list(range(11)) and shards[1].tolist() == list(range(11, 21))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank 2 is outside world_size 2"):
        _loader(_split(4), rank=2, world_size=2)
    with pytest.raises(ValueError, match="mean/std need 3 values"):
        _loader(_split(4), mean=(0.5,), std=(0.5,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches() -> None:
    """Random draws come from a CPU generator, so the device does not change the data."""
    split = _split(40)
    options = dict(crop_padding=2, flip=True, seed=5, channels_last=True)
    cpu = _epoch(_loader(split, **options), 1)
    cuda = _epoch(_loader(split, device=torch.device("cuda"), **options), 1)
    for (x, y), (x_gpu, y_gpu) in zip(cpu, cuda, strict=True):
        assert x_gpu.is_cuda and torch.equal(y, y_gpu.cpu())
        torch.testing.assert_close(x, x_gpu.cpu(), rtol=0, atol=1e-6)


def test_crop_padding_1_reaches_every_offset_including_the_last() -> None:
    """With padding p the window may start anywhere in 0..2p on each axis: an off-by-one that
    never shifts it down or right would make the augmentation lopsided, and a student trained
    with it would see objects pushed only one way."""
    split = _split(200)
    images, labels = _epoch(_loader(split, batch_size=200, crop_padding=1))[0]
    padded = F.pad(split.images, (1, 1, 1, 1))
    seen: set[tuple[int, int]] = set()
    for sample, label in zip(_to_uint8(images), labels.tolist(), strict=True):
        windows = [
            (top, left)
            for top in range(3)
            for left in range(3)
            if torch.equal(sample, padded[label, :, top : top + 6, left : left + 6])
        ]
        assert len(windows) == 1, f"sample {label} matches windows {windows}"
        seen.add(windows[0])
    assert seen == {(top, left) for top in range(3) for left in range(3)}
