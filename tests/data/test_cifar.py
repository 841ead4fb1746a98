"""CIFAR readers: the real CIFAR-10 batches byte for byte, and the format on small fakes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from torchvision.datasets import CIFAR10

from compressor.data import Dataset, dataset_num_classes, load_dataset
from compressor.data.cifar import LAYOUTS
from compressor.errors import UserError
from compressor.recipe import DataConfig
from tests.as_another_user import compress_as_nobody, open_folder
from tests.export.helpers import one_error_line

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def real_cifar10(cifar10_root: Path) -> Dataset:
    return load_dataset(DataConfig(name="cifar10", root=cifar10_root))


def test_real_cifar10_shapes_and_class_counts(real_cifar10: Dataset) -> None:
    assert real_cifar10.image_shape == (3, 32, 32)
    assert real_cifar10.train.images.shape == (50_000, 3, 32, 32)
    assert real_cifar10.test.images.shape == (10_000, 3, 32, 32)
    assert real_cifar10.train.images.dtype == torch.uint8
    assert real_cifar10.train.images.is_contiguous()
    assert torch.bincount(real_cifar10.train.labels).tolist() == [5000] * 10
    assert torch.bincount(real_cifar10.test.labels).tolist() == [1000] * 10
    assert real_cifar10.classes[:3] == ["airplane", "automobile", "bird"]
    assert real_cifar10.mean == (0.485, 0.456, 0.406)
    assert (real_cifar10.crop_padding, real_cifar10.flip) == (4, True)


def test_real_cifar10_content_matches_published_sha256(
    real_cifar10: Dataset, cifar10_root: Path
) -> None:
    """The json hashes each batch's b"data" array bytes ([10000, 3072] channel-major uint8)
    and its label list as one byte per label (bytes(labels)). Recomputing them from the
    loaded tensors proves the reader kept every pixel, label, order and the CHW layout."""
    hashes_file = cifar10_root / "cifar-10-content-sha256.json"
    if not hashes_file.is_file():
        pytest.skip(f"{hashes_file} not found")
    expected = json.loads(hashes_file.read_text())
    splits = [(name, real_cifar10.train, i) for i, name in enumerate(CIFAR10_TRAIN)]
    splits.append(("test_batch", real_cifar10.test, 0))
    for name, split, index in splits:
        rows = slice(index * 10_000, (index + 1) * 10_000)
        data = split.images[rows].numpy().reshape(10_000, 3072)
        labels = split.labels[rows].numpy().astype(np.uint8)
        assert hashlib.sha256(data.tobytes()).hexdigest() == expected[name]["data_sha256"], name
        assert hashlib.sha256(labels.tobytes()).hexdigest() == expected[name]["labels_sha256"]


def test_real_cifar10_class_count_is_cheap(cifar10_root: Path) -> None:
    config = DataConfig(name="cifar10", root=cifar10_root / "cifar-10-batches-py")
    assert dataset_num_classes(config) == 10


# --- small fake batches in the official format --------------------------------------------


def _dump(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        pickle.dump(content, file, protocol=2)


def _batch(count: int, num_classes: int, label_key: bytes, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
    return {b"data": data, label_key: [i % num_classes for i in range(count)]}


def make_cifar10(parent: Path, per_batch: int = 20) -> Path:
    folder = parent / "cifar-10-batches-py"
    for seed, name in enumerate([*CIFAR10_TRAIN, "test_batch"]):
        _dump(folder / name, _batch(per_batch, 10, b"labels", seed))
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return folder


def make_cifar100(parent: Path) -> Path:
    folder = parent / "cifar-100-python"
    _dump(folder / "train", _batch(300, 100, b"fine_labels", 0))
    _dump(folder / "test", _batch(200, 100, b"fine_labels", 1))
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    return folder


def test_fake_cifar10_layout_from_parent_or_batches_dir(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    from_parent = load_dataset(DataConfig(name="cifar10", root=tmp_path))
    from_folder = load_dataset(DataConfig(name="cifar10", root=folder))
    assert torch.equal(from_parent.train.images, from_folder.train.images)
    assert from_parent.train.images.shape == (100, 3, 32, 32)
    assert from_parent.classes == [f"c{i}" for i in range(10)]
    with (folder / "data_batch_2").open("rb") as file:
        original = pickle.load(file, encoding="bytes")
    # Row k of a batch: 1024 red, 1024 green, 1024 blue values, each plane row-major.
    image = from_parent.train.images[20 + 7]
    assert torch.equal(image[1, 3, 5], torch.tensor(original[b"data"][7, 1024 + 3 * 32 + 5]))
    assert from_parent.train.labels[20:30].tolist() == list(range(10))


def test_fake_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    config = DataConfig(name="cifar100", root=tmp_path)
    dataset = load_dataset(config)
    assert dataset_num_classes(config) == dataset.num_classes == 100
    assert dataset.train.labels.tolist() == [i % 100 for i in range(300)]
    assert len(dataset.test) == 200
    assert dataset.classes[99] == "f99"


def _error(config: DataConfig) -> str:
    with pytest.raises(UserError) as caught:
        load_dataset(config)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_root_missing_says_how_to_set_it(tmp_path: Path) -> None:
    message = _error(DataConfig(name="cifar10", root=tmp_path / "nope"))
    assert "does not exist" in message and "COMPRESSOR_DATA_ROOT" in message
    with pytest.raises(UserError, match="does not exist"):
        dataset_num_classes(DataConfig(name="cifar10", root=tmp_path / "nope"))


def test_root_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPRESSOR_DATA_ROOT", raising=False)
    assert "data.root is not set" in _error(DataConfig(name="cifar100"))


def test_batches_missing_suggest_download(tmp_path: Path) -> None:
    message = _error(DataConfig(name="cifar10", root=tmp_path))
    assert "no CIFAR-10 batches" in message and "data.download" in message
    with pytest.raises(UserError, match="no CIFAR-10 batches"):
        dataset_num_classes(DataConfig(name="cifar10", root=tmp_path))


def test_some_batches_missing_are_named(tmp_path: Path) -> None:
    """ "no CIFAR-10 batches" with six of the seven files there sent the user to the folder,
    not to the one file."""
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    assert _error(DataConfig(name="cifar10", root=tmp_path)) == (
        f"{folder} holds 6 of the 7 CIFAR-10 files but not data_batch_3; put them back (the "
        "official archive has them all) or set data.download: true"
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda p: p.write_bytes(p.read_bytes()[: os.path.getsize(p) // 2]),
            "pickle data was truncated",
        ),
        (lambda p: p.write_text("not a pickle at all"), "not a readable CIFAR pickle"),
        (lambda p: _dump(p, [1, 2, 3]), "not a CIFAR batch"),
        (lambda p: _dump(p, {b"data": np.zeros((4, 100), np.uint8)}), "3072"),
        (lambda p: _dump(p, {b"data": np.zeros((4, 3072), np.uint8)}), "'labels'"),
        (lambda p: _dump(p, _batch(12, 12, b"labels", 0)), "labels must lie in 0..9"),
        (
            lambda p: _dump(p, {**_batch(3, 10, b"labels", 0), b"labels": [0, b"batch 1", 2]}),
            "'labels' holds something other than integer labels",
        ),
        (lambda p: _dump(p, {b"run": os.system}), "unexpected object"),
    ],
)
def test_damaged_batch_is_named(
    tmp_path: Path, damage: Callable[[Path], object], expected: str
) -> None:
    folder = make_cifar10(tmp_path)
    damage(folder / "data_batch_3")
    message = _error(DataConfig(name="cifar10", root=tmp_path))
    assert "data_batch_3" in message and expected in message


def test_failed_download_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nothing listens on: the real download code fails at once, with or without network.
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    config = DataConfig(name="cifar10", root=tmp_path / "cifar", download=True)
    assert dataset_num_classes(config) == 10  # pre-flight: the download will fetch it
    message = _error(config)
    assert "could not download CIFAR-10" in message and "check the network" in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_file_layout_is_the_one_torchvision_downloads(name: str) -> None:
    """The folder and file names are spelt out (importing torchvision is slow); they must be
    what the archive torchvision fetches unpacks to."""
    layout = LAYOUTS[name]
    source = getattr(torchvision.datasets, layout.torchvision_class)
    assert layout.folder == source.base_folder
    assert list(layout.train_files) == [file for file, _md5 in source.train_list]
    assert [layout.test_file] == [file for file, _md5 in source.test_list]
    assert layout.meta_file == source.meta["filename"]
    assert layout.names_key.decode() == source.meta["key"]


def test_a_batch_this_user_may_not_read_is_said_so_not_called_corrupt() -> None:
    """ "download it again" sent the user after a file that only needed its permissions."""
    with open_folder() as folder:
        batches = make_cifar10(folder / "data")
        (batches / "test_batch").chmod(0o600)  # root's own
        recipe = folder / "r.yaml"
        recipe.write_text(
            f"student: {{arch: resnet8}}\ndata: {{name: cifar10, root: {folder / 'data'}}}\n"
            "train: {epochs: 1, device: cpu}\n"
        )
        said = compress_as_nobody(folder, "train", str(recipe))
        assert one_error_line(said) == (
            f"error: {batches / 'test_batch'}: cannot read it (Permission denied); make it "
            "readable by this user"
        )
