"""Data sets decoded once into uint8 tensors, and on-device batching with augmentation.

    dataset = load_dataset(recipe.data)
    loader = BatchLoader(dataset.train, batch_size=128, device=device, mean=dataset.mean,
                         std=dataset.std, train=True, crop_padding=dataset.crop_padding,
                         flip=dataset.flip, seed=recipe.train.seed)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels in loader: ...

Readers (one module per data set) only decode files; `load.py` does what all share.
"""

from compressor.data.load import (
    check_crop_padding,
    check_stats_channels,
    dataset_channels,
    dataset_image_size,
    dataset_num_classes,
    load_dataset,
    load_test_split,
    with_channels_hint,
    with_same_effect_written_as,
)
from compressor.data.loader import BatchLoader
from compressor.data.sets import Dataset, EvalData, ImageSet, class_changes

__all__ = [
    "BatchLoader",
    "Dataset",
    "EvalData",
    "ImageSet",
    "check_crop_padding",
    "check_stats_channels",
    "class_changes",
    "dataset_channels",
    "dataset_image_size",
    "dataset_num_classes",
    "load_dataset",
    "load_test_split",
    "with_channels_hint",
    "with_same_effect_written_as",
]
