"""Splits and the class-balanced subsets data.max_*_samples keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.data.sets import ImageSet, balanced_indices, subset_indices


def test_a_subset_takes_from_every_class_and_lets_a_small_one_run_out() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    chosen = balanced_indices(labels, 12, seed=3)
    assert np.all(np.diff(chosen) > 0)  # sorted, no repeats
    assert np.bincount(labels[chosen]).tolist() == [5, 5, 2]
    assert np.array_equal(chosen, balanced_indices(labels, 12, seed=3))
    assert not np.array_equal(chosen, balanced_indices(labels, 12, seed=4))
    assert np.array_equal(balanced_indices(labels, 50, seed=3), np.arange(22))


def test_a_subset_is_the_same_every_run_and_none_keeps_everything() -> None:
    labels = np.arange(30) % 3
    assert subset_indices(labels, None) is None and subset_indices(labels, 30) is None
    kept = subset_indices(labels, 9)
    assert kept is not None and np.array_equal(kept, subset_indices(labels, 9))
    assert np.bincount(labels[kept]).tolist() == [3, 3, 3]


def test_a_split_holds_uint8_images_and_one_int64_label_each() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="images must be uint8"):
        ImageSet(images.float(), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must be int64 \[4\]"):
        ImageSet(images, torch.zeros(3, dtype=torch.int64))
    split = ImageSet(images, torch.arange(4))
    picked = split.select(np.array([3, 1]))
    assert picked.labels.tolist() == [3, 1] and picked.images.is_contiguous()
    picked.images += 1  # a copy: the split is left as it was
    assert split.images.sum() == 0


def test_the_subset_max_samples_keeps_is_pinned() -> None:
    """The images data.max_*_samples keeps must be the same on every run, machine and
    version: a changed choice makes the same quick recipe train and score on other images
    than before, and its figures incomparable with earlier ones."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    kept = subset_indices(labels, 6)
    assert kept is not None and kept.tolist() == [0, 2, 4, 7, 9, 11]
