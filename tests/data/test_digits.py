"""The embedded digits set and the steps load_dataset applies to every data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from compressor.data import dataset_num_classes, digits, load_dataset
from compressor.data.load import channel_stats
from compressor.errors import UserError
from compressor.recipe import DataConfig


def test_digits_defaults() -> None:
    dataset = load_dataset(DataConfig())
    assert dataset.name == "digits"
    assert dataset.image_shape == (1, 8, 8)
    assert (len(dataset.train), len(dataset.test)) == (1437, 360)
    assert dataset.classes == [str(d) for d in range(10)]
    assert torch.bincount(dataset.test.labels).tolist() == [36] * 10
    assert int(dataset.train.images.max()) == 255 and int(dataset.train.images.min()) == 0
    assert (dataset.crop_padding, dataset.flip) == (1, False)
    assert dataset_num_classes(DataConfig()) == 10


def test_digits_split_is_a_fixed_partition() -> None:
    first, second = load_dataset(DataConfig()), load_dataset(DataConfig())
    assert torch.equal(first.test.images, second.test.images)
    together = torch.cat([first.train.images, first.test.images]).flatten(1)
    source = np.rint(load_digits().images * (255 / 16)).astype(np.uint8).reshape(1797, 64)
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, source))


def test_digits_statistics_are_measured_on_the_train_split() -> None:
    dataset = load_dataset(DataConfig())
    mean, std = channel_stats(dataset.train.images)
    assert dataset.mean == pytest.approx(mean) and dataset.std == pytest.approx(std)
    pixels = dataset.train.images.double() / 255
    assert dataset.mean[0] == pytest.approx(pixels.mean().item())
    assert dataset.std[0] == pytest.approx(pixels.std(correction=0).item())


def test_recipe_values_override_defaults() -> None:
    config = DataConfig(mean=(0.5,), std=(0.25,), crop_padding=0, flip=True)
    dataset = load_dataset(config)
    assert (dataset.mean, dataset.std, dataset.crop_padding, dataset.flip) == (
        (0.5,),
        (0.25,),
        0,
        True,
    )


def test_a_crop_padding_of_the_image_side_is_refused() -> None:
    """Padding 8×8 digits by 8 lets a crop miss the image: the run would train at chance."""
    assert load_dataset(DataConfig(crop_padding=7)).crop_padding == 7
    with pytest.raises(UserError, match=r"data\.crop_padding: 8 pads 8x8 images by their side"):
        load_dataset(DataConfig(crop_padding=8))
    assert load_dataset(DataConfig(crop_padding=8, image_size=16)).crop_padding == 8


def test_image_size_resizes_once_and_scales_default_padding() -> None:
    dataset = load_dataset(DataConfig(image_size=16))
    assert dataset.image_shape == (1, 16, 16)
    assert dataset.test.images.shape == (360, 1, 16, 16)
    assert dataset.train.images.dtype == torch.uint8
    assert dataset.crop_padding == 2


def test_max_samples_give_a_stable_class_balanced_subset() -> None:
    config = DataConfig(max_train_samples=100, max_test_samples=25)
    first, second = load_dataset(config), load_dataset(config)
    assert torch.bincount(first.train.labels).tolist() == [10] * 10
    assert sorted(torch.bincount(first.test.labels).tolist()) == [2] * 5 + [3] * 5
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)
    assert first.mean == load_dataset(DataConfig()).mean  # quick runs normalise like full ones


def test_mean_with_wrong_channel_count() -> None:
    with pytest.raises(UserError, match="have 3 values but digits images have 1 channel"):
        load_dataset(DataConfig(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)))


def test_the_packaged_digits_are_scikit_learns() -> None:
    """digits.npz is scikit-learn's `load_digits`, image for image and label for label."""
    stored = np.load(Path(digits.__file__).with_name("digits.npz"), allow_pickle=False)
    source = load_digits()
    assert stored["images"].dtype == np.uint8
    np.testing.assert_array_equal(stored["images"], source.images)
    np.testing.assert_array_equal(stored["labels"], source.target)
