"""`BatchLoader`: batches from an in-memory split, augmented and normalised on the device.

Replaces torch's DataLoader for in-memory data: no worker processes, no per-image
transforms, no host-to-device copy per batch. The whole uint8 split is moved to the device
once; each batch is a gather, an optional crop and flip, and a normalise.

Training order: one permutation per epoch, identical on every rank. Global step s covers
positions [s * B * W, (s + 1) * B * W) of it (B = batch_size per rank, W = world_size) and
rank r takes the r-th block of B. Crop offsets and flips are drawn per permutation position,
so the samples and their augmentation do not depend on how many ranks share the work: two
ranks with batch B see exactly what one rank with batch 2B sees. Without drop_last, the
last global step is split evenly over the ranks, wrapping around to the start of the
permutation for at most W - 1 samples (as torch's DistributedSampler does), so every rank
runs the same number of equally sized steps and DDP stays in lockstep.

Evaluation order: the split in order, no augmentation. With W > 1 each rank takes one
contiguous shard (sizes differ by at most one sample, so the step count may differ by one):
sum correct counts and totals, then all-reduce once after the loop, not per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from compressor.data.augment import crop, hflip, normalize
from compressor.data.sets import ImageSet


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, epoch).

    SeedSequence mixes the pair, so neighbouring seeds or epochs give unrelated streams.
    Drawing on the CPU makes batches identical whatever device trains on them.
    """
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


class BatchLoader:
    """Iterates (images float32 [B, C, H, W] normalised, labels int64 [B]) on `device`;
    `indexed()` adds each sample's index into the split.

    `crop_padding` and `flip` apply only when `train` is True. `drop_last` defaults to True
    for training (unless the split is smaller than one global batch) and False for eval.
    `max_steps` caps the batches per epoch, for quick runs.
    """

    def __init__(
        self,
        split: ImageSet,
        *,
        batch_size: int,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        drop_last: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        max_steps: int | None = None,
    ) -> None:
        channels = split.images.shape[1]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values, got {len(mean)}/{len(std)}")
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)
        self.batch_size = batch_size
        self.train = train
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.channels_last = channels_last
        self.max_steps = max_steps
        global_batch = batch_size * world_size
        self.drop_last = (train and len(split) >= global_batch) if drop_last is None else drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentation the next iteration uses."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._steps())

    def _positions(self) -> int:
        """Length of the epoch's position list after dropping or padding the tail."""
        count = len(self.labels)
        if not self.train:
            return count
        if self.drop_last:
            global_batch = self.batch_size * self.world_size
            return count // global_batch * global_batch
        return -(-count // self.world_size) * self.world_size

    def _steps(self) -> list[tuple[int, int]]:
        """(start, stop) ranges into the epoch's position list that this rank iterates."""
        total = self._positions()
        if self.train:
            global_batch = self.batch_size * self.world_size
            steps = []
            for begin in range(0, total, global_batch):
                share = (min(begin + global_batch, total) - begin) // self.world_size
                start = begin + self.rank * share
                steps.append((start, start + share))
        else:
            base, extra = divmod(total, self.world_size)
            low = self.rank * base + min(self.rank, extra)
            high = low + base + (self.rank < extra)
            if self.drop_last:
                high -= (high - low) % self.batch_size
            steps = [
                (start, min(start + self.batch_size, high))
                for start in range(low, high, self.batch_size)
            ]
        return steps[: self.max_steps]

    def _plan(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """This epoch's sample order, crop offsets and flip mask, one row per position."""
        count = len(self.labels)
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(count, generator=generator)
        offsets = flips = None
        if self.crop_padding:
            high = 2 * self.crop_padding + 1
            offsets = torch.randint(0, high, (count, 2), generator=generator)
        if self.flip:
            flips = torch.rand(count, generator=generator) < 0.5
        # Drop the tail (drop_last) or wrap around to pad it; see the module docstring.
        take = torch.arange(self._positions()) % max(count, 1)
        order = order[take].to(self.device)
        if offsets is not None:
            offsets = offsets[take].to(self.device)
        if flips is not None:
            flips = flips[take].to(self.device)
        return order, offsets, flips

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, _ in self.indexed():
            yield images, labels

    def indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Like iterating, plus each sample's index into the split (int64 [B], on `device`).

        The index names a sample across epochs whatever the shuffle, so a method can keep
        per-sample state (the boundary-sample bank) from one epoch to the next.
        """
        if not self.train:
            for start, stop in self._steps():
                index = torch.arange(start, stop, device=self.device)
                yield self._finish(self.images[start:stop]), self.labels[start:stop], index
            return
        order, offsets, flips = self._plan()
        for start, stop in self._steps():
            index = order[start:stop]
            images = self.images[index]
            if offsets is not None:
                images = crop(images, self.crop_padding, offsets[start:stop])
            if flips is not None:
                images = hflip(images, flips[start:stop])
            yield self._finish(images), self.labels[index], index

    def _finish(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return normalize(images, self.mean, self.std)
