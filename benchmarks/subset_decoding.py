"""How long reading Tiny ImageNet takes for a quick run (`data.max_train_samples`): the images
the subset keeps, decoded alone, against the whole training split decoded and then cut (what
the reader did before session 41). On a synthetic Tiny ImageNet laid out as the real one
(`tiny-imagenet-200/`: wnids.txt, train/<wnid>/images/*.JPEG, val/), 64x64 JPEGs, since the
real one is not here; medians of --repeats, the two alternated.

    python benchmarks/subset_decoding.py --per-class 50 --keep 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from arguments import count
from PIL import Image

from compressor.data import load_dataset
from compressor.data.files import decode_split
from compressor.data.sets import subset_indices
from compressor.data.tiny_imagenet import _find_root, _train_files, _wnids
from compressor.recipe import DataConfig


def make_tiny_imagenet(root: Path, classes: int, per_class: int) -> Path:
    """A Tiny ImageNet of random 64x64 JPEGs: `per_class` training and 2 validation images
    per class."""
    rng = np.random.default_rng(0)
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(classes)]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    annotations = []
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for number in range(per_class + 2):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            if number < per_class:
                Image.fromarray(pixels).save(images / f"{wnid}_{number}.JPEG")
            else:
                name = f"val_{wnid}_{number}.JPEG"
                Image.fromarray(pixels).save(folder / "val" / "images" / name)
                annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return root


def whole_split_then_cut(config: DataConfig) -> int:
    """The reader before: every training image decoded, then the subset taken."""
    root = _find_root(config)
    paths, labels = _train_files(root, _wnids(root))
    split = decode_split(paths, labels, None)
    kept = subset_indices(split.labels.numpy(), config.max_train_samples)
    return len(split if kept is None else split.select(kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=count(2), default=200)
    parser.add_argument("--per-class", type=count(1), default=50)
    parser.add_argument("--keep", type=count(1), default=1000, help="data.max_train_samples")
    parser.add_argument("--repeats", type=count(1), default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = make_tiny_imagenet(Path(scratch), args.classes, args.per_class)
        config = DataConfig(name="tiny_imagenet", root=root, max_train_samples=args.keep)
        subset, whole = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            kept = len(load_dataset(config).train)
            subset.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert whole_split_then_cut(config) == kept
            whole.append(time.perf_counter() - start)
    images = args.classes * args.per_class
    print(
        f"{kept} of {images} training images: subset decoded alone "
        f"{statistics.median(subset):.2f} s (load_dataset, test split included), whole split "
        f"decoded then cut {statistics.median(whole):.2f} s (training split alone); medians "
        f"of {args.repeats}"
    )


if __name__ == "__main__":
    main()
