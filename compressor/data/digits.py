"""The embedded default: 8x8 handwritten digits shipped in the package (no download).

1797 grayscale images with values 0..16, 10 classes, about 180 per class: the test set of the
UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin and C. Kaynak, 1998,
CC BY 4.0), as scikit-learn bundles it (`load_digits`), stored in `digits.npz` (45 KB; a test
checks it against scikit-learn's copy). It makes the quickstart and the test suite run
anywhere in seconds. It is not read through scikit-learn: importing that took 1.4 s in every
process, and installing it (with SciPy) 170 MB, for 115 KB of pixels.

The split is our own (a fixed-seed, class-balanced 360-image test set), independent of the
recipe seed, so every run and every machine evaluates on the same images.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from compressor.data.sets import ImageSet, balanced_indices
from compressor.recipe import DataConfig

NUM_CLASSES = 10
TEST_SIZE = 360  # 20 %, 36 per class
SPLIT_SEED = 0


def num_classes(cfg: DataConfig) -> int:
    return NUM_CLASSES


def read(cfg: DataConfig, with_train: bool = True) -> tuple[ImageSet | None, ImageSet, list[str]]:
    """Train (1437; None unless `with_train`) and test (360) splits, uint8 [N, 1, 8, 8]
    scaled from 0..16 to 0..255."""
    with resources.files(__package__).joinpath("digits.npz").open("rb") as file:
        stored = np.load(file, allow_pickle=False)
        images, labels = stored["images"], stored["labels"].astype(np.int64)
    pixels = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    everything = ImageSet(torch.from_numpy(pixels), torch.from_numpy(labels))
    test_index = balanced_indices(labels, TEST_SIZE, SPLIT_SEED)
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    classes = [str(digit) for digit in range(NUM_CLASSES)]
    train = everything.select(train_index) if with_train else None
    return train, everything.select(test_index), classes
