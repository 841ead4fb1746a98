"""Bank mode for BSS and AMKD: boundary-supporting samples reused for `method.bank_epochs`.

The teacher is frozen, so a boundary sample depends only on the teacher, its base image and
the drawn target class: it stays a boundary sample of the teacher however the student moves.
Epochs are grouped in windows of K = bank_epochs. The first epoch of a window (*refresh*)
attacks as usual and stores every sample it makes under its base image's data-set index:
the adversarial image x~, source b, target k, whether it landed, and the teacher's logits (and
features, where the method embeds there) on x~, so reuse costs no teacher pass on x~ at all.
The other K - 1 epochs (*reuse*) run no attack: the batch rows with a banked sample are the
candidates, the usual base selection (teacher and student right on the clean image, largest
disagreement first, at most attack.fraction of the batch) picks among them, and their banked
samples stand in for the attack's. An entry outlives its window until its index is attacked
again: it is still a valid boundary sample, and more candidates keep the selection close to
what an attack step would pick.

The bank lives on the training device, sized for the whole data set and allocated at the
first stored sample (CIFAR-10 in fp32: 50,000 x 3 x 32 x 32 x 4 B = 614 MB). It is not
checkpointed: it would add its size to every epoch's checkpoint (twice, with the previous
one kept). So the first epoch after a resume is always a refresh, and the entries earlier
windows left are gone, which leaves later reuse epochs fewer candidates: a resumed run is not
bit-identical to an uninterrupted one, even when it resumes at a window's start (the resume
warns). Under
DDP each rank keeps its own bank of the samples it attacked; since every epoch deals the
shuffled data set to the ranks anew, a reuse step on W ranks finds about 1/W of the
candidates one process would.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from compressor.methods.boundary import (
    BoundarySamples,
    Bounds,
    attack_stats,
    find_boundary_samples,
    max_base_samples,
    no_samples,
    select_base,
)
from compressor.recipe import AttackConfig


def _layout(images: torch.Tensor) -> torch.memory_format:
    """channels_last for NHWC-strided image batches, else the default layout."""
    nhwc = images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if nhwc else torch.contiguous_format


@dataclasses.dataclass
class _Entries:
    """The bank's storage: one row per data-set index; `filled` says which rows hold one."""

    images: torch.Tensor  # [N, C, H, W] fp32, in the memory format the attack returned
    teacher_logits: torch.Tensor  # [N, K] fp32
    source: torch.Tensor  # [N] int64
    target: torch.Tensor  # [N] int64
    landed: torch.Tensor  # [N] bool
    filled: torch.Tensor  # [N] bool
    teacher_features: torch.Tensor | None  # [N, F] fp32, for feature-space triplets

    @classmethod
    def allocate(cls, size: int, samples: BoundarySamples) -> _Entries:
        """Zero-filled rather than empty: the memory is committed now, so a bank that does not
        fit fails at the first refresh step, not epochs later when its rows have filled up."""
        device = samples.images.device
        images = torch.empty(
            (size, *samples.images.shape[1:]),
            device=device,
            memory_format=_layout(samples.images),
        ).zero_()
        features = samples.teacher_features

        def rows(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros((size, *shape), dtype=dtype, device=device)

        return cls(
            images=images,
            teacher_logits=rows(samples.teacher_logits.shape[1]),
            source=rows(dtype=torch.int64),
            target=rows(dtype=torch.int64),
            landed=rows(dtype=torch.bool),
            filled=rows(dtype=torch.bool),
            teacher_features=None if features is None else rows(features.shape[1]),
        )


class BoundaryBank:
    """Boundary samples keyed by data-set index, for the reuse epochs of bank mode."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: _Entries | None = None

    def store(self, keys: torch.Tensor, samples: BoundarySamples) -> None:
        """Bank `samples` (row i under data-set index keys[i]), replacing older entries."""
        if keys.numel() == 0:
            return
        if self._entries is None:
            self._entries = _Entries.allocate(self.size, samples)
        entries = self._entries
        entries.images[keys] = samples.images.float()
        entries.teacher_logits[keys] = samples.teacher_logits.float()
        entries.source[keys] = samples.source
        entries.target[keys] = samples.target
        entries.landed[keys] = samples.landed
        entries.filled[keys] = True
        if entries.teacher_features is not None and samples.teacher_features is not None:
            entries.teacher_features[keys] = samples.teacher_features.float()

    def has(self, keys: torch.Tensor) -> torch.Tensor:
        """bool [B]: which of the data-set indices `keys` hold a banked sample."""
        if self._entries is None:
            return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
        return self._entries.filled[keys]

    def reuse(
        self,
        keys: torch.Tensor,
        images: torch.Tensor,
        labels: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_logits: torch.Tensor,
        config: AttackConfig,
    ) -> BoundarySamples:
        """This batch's boundary samples from the bank, chosen as an attack step would choose
        its base images; `attacked` counts them and `mean_steps` is 0 (no attack step ran)."""
        max_samples = max_base_samples(config, labels.numel())
        index = select_base(
            labels, teacher_logits, student_logits, max_samples, candidates=self.has(keys)
        )
        if index.numel() == 0 or self._entries is None:
            return no_samples(images, labels, teacher_logits)
        entries, rows = self._entries, keys[index]
        landed = entries.landed[rows]
        features = entries.teacher_features
        return BoundarySamples(
            images=entries.images[rows].contiguous(memory_format=_layout(images)),
            teacher_logits=entries.teacher_logits[rows],
            index=index,
            source=entries.source[rows],
            target=entries.target[rows],
            landed=landed,
            stats=attack_stats(index.numel(), 0.0, landed.float().mean().item()),
            teacher_features=None if features is None else features[rows],
        )


class BoundarySampler:
    """Each step's boundary samples for BSS and AMKD: from the attack, or in bank mode from
    the bank on reuse epochs. With bank_epochs 1 it is exactly `find_boundary_samples`."""

    def __init__(
        self,
        teacher: nn.Module,
        config: AttackConfig,
        bounds: Bounds | None,
        *,
        bank_epochs: int = 1,
        dataset_size: int | None = None,
        features: bool = False,
    ) -> None:
        """`features`: also give the teacher's penultimate features on each sample (AMKD's
        feature embedding), computed once at the attack and banked with the sample."""
        self.teacher = teacher
        self.config = config
        self.bounds = bounds
        self.bank_epochs = bank_epochs
        self.features = features
        self.bank: BoundaryBank | None = None
        if bank_epochs > 1:
            if dataset_size is None:
                raise ValueError("bank_epochs > 1 needs dataset_size, the bank's row count")
            self.bank = BoundaryBank(dataset_size)
        self._window: int | None = None  # the window whose refresh epoch is `_refresh_epoch`
        self._refresh_epoch = -1

    def refreshes(self, epoch: int) -> bool:
        """Whether `epoch` attacks: the first epoch of each window of bank_epochs, and the
        first epoch this sampler sees in a window (after a resume its bank is empty)."""
        window = epoch // self.bank_epochs
        if window != self._window:
            self._window, self._refresh_epoch = window, epoch
        return epoch == self._refresh_epoch

    def samples(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | None,
        teacher_logits: torch.Tensor,
        student_logits: torch.Tensor,
        epoch: int,
    ) -> BoundarySamples:
        """The batch's boundary samples; `indices` are its data-set indices (bank mode only)."""
        if self.bank is not None:
            if indices is None:
                raise ValueError("bank mode needs each batch's data-set indices: step(indices=)")
            if not self.refreshes(epoch):
                return self.bank.reuse(
                    indices, images, labels, teacher_logits, student_logits, self.config
                )
        adv = find_boundary_samples(
            self.teacher, images, labels, teacher_logits, student_logits, self.config, self.bounds
        )
        if self.features and adv.images.shape[0]:
            with torch.no_grad():
                teacher: Any = self.teacher  # forward_features is the model's own
                features = teacher.forward_features(adv.images)
            adv = dataclasses.replace(adv, teacher_features=features)
        if self.bank is not None and indices is not None:
            self.bank.store(indices[adv.index], adv)
        return adv
