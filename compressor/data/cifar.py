"""CIFAR-10 and CIFAR-100, read straight from the official python pickle batches.

Why not `torchvision.datasets.CIFAR10`: it verifies md5 sums of the whole files, and copies
that differ only in metadata (e.g. without `b"filenames"`, like the shared development copy)
fail that check although every pixel and label is exact. Reading the pickles ourselves is
also the fast path: one numpy reshape of 180 MB, about a second for all of CIFAR-10.
torchvision is still used to download the archive when `data.download` is set.

Default normalisation is the ImageNet statistics, not CIFAR's own: the shared pretrained
CIFAR teachers were trained with them, and a student must see what its teacher saw.
"""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressor.data.files import require_root, root_text
from compressor.data.sets import ImageSet
from compressor.errors import UserError
from compressor.recipe import DATA_ROOT_ENV, DataConfig

_SIDE = 32
_PIXELS = 3 * _SIDE * _SIDE


@dataclass(frozen=True)
class _Layout:
    """The official archive's folder and files. Spelt out rather than read from torchvision's
    dataset classes: importing torchvision costs about 2 s in every process that reads CIFAR,
    and only a download needs it (for the archive's URL and checksum)."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    torchvision_class: str  # torchvision.datasets' class: the archive's URL and md5

    @property
    def all_files(self) -> list[str]:
        return [*self.train_files, self.test_file, self.meta_file]


LAYOUTS = {
    "cifar10": _Layout(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{number}" for number in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        num_classes=10,
        torchvision_class="CIFAR10",
    ),
    "cifar100": _Layout(
        title="CIFAR-100",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        num_classes=100,
        torchvision_class="CIFAR100",
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, so a data file cannot run code."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 writes bytes into protocol-2 pickles
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR file")
        return super().find_class(module, name)


def _find_batches(root: Path, layout: _Layout) -> Path | None:
    """The directory holding the batch files: `root` itself or its standard sub-folder."""
    for candidate in (root, root / layout.folder):
        if all((candidate / name).is_file() for name in layout.all_files):
            return candidate
    return None


def _missing_message(cfg: DataConfig, root: Path, layout: _Layout) -> str:
    """Which files are missing where most of them are: "no batches" with six of seven there
    sent the user to check the folder rather than the one file."""
    candidates = (root, root / layout.folder)
    found = [[name for name in layout.all_files if (c / name).is_file()] for c in candidates]
    most = max(range(len(candidates)), key=lambda i: len(found[i]))
    if found[most]:
        missing = [name for name in layout.all_files if name not in found[most]]
        return (
            f"{candidates[most]} holds {len(found[most])} of the {len(layout.all_files)} "
            f"{layout.title} files but not {', '.join(missing)}; put them back (the official "
            "archive has them all) or set data.download: true"
        )
    return (
        f"no {layout.title} batches in {root_text(cfg)}: looked for "
        f"{', '.join(layout.all_files)} there and in {root / layout.folder}; point "
        "data.root at them or set data.download: true"
    )


def _download(root: Path, layout: _Layout) -> None:
    """Fetch and unpack the official archive into `root` with torchvision."""
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    source = getattr(datasets, layout.torchvision_class)
    target = root.parent if root.name == layout.folder else root
    try:
        target.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(
            source.url,
            target,
            filename=source.filename,
            md5=source.tgz_md5,
            remove_finished=True,
        )
    except (OSError, RuntimeError, ValueError, tarfile.TarError) as error:
        message = str(error).replace("\n", " ")
        raise UserError(
            f"could not download {layout.title} into {target} ({message}); check the network, "
            f"or download {source.url} by hand, unpack it and set data.root"
        ) from None


def _root(cfg: DataConfig, layout: _Layout) -> Path:
    """data.root; it may be missing only when it is where a download will go."""
    if not cfg.download:
        return require_root(cfg)
    if cfg.root is None:
        raise UserError(
            f"data.root is not set for {layout.title}; set it to where the data should be "
            f"downloaded (or {DATA_ROOT_ENV})"
        )
    return Path(cfg.root)


def _batches_dir(cfg: DataConfig, layout: _Layout) -> Path:
    root = _root(cfg, layout)
    found = _find_batches(root, layout)
    if found is None and cfg.download:
        _download(root, layout)
        found = _find_batches(root, layout)
    if found is None:
        raise UserError(_missing_message(cfg, root, layout))
    return found


def num_classes(cfg: DataConfig) -> int:
    """Class count without reading a batch; still checks that the files are there (or that
    `data.download` will fetch them), so a bad recipe fails before any model is built."""
    layout = LAYOUTS[cfg.name]
    root = _root(cfg, layout)
    if not cfg.download and _find_batches(root, layout) is None:
        raise UserError(_missing_message(cfg, root, layout))
    return layout.num_classes


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with path.open("rb") as file:
            content = _ArrayUnpickler(file, encoding="bytes").load()
    except OSError as error:  # the system's refusal (permissions, an I/O error), not the file
        raise UserError(
            f"{path}: cannot read it ({error.strerror or error}); make it readable by this user"
        ) from None
    except Exception as error:  # any failure to unpickle means a damaged or foreign file
        raise UserError(
            f"{path} is not a readable CIFAR pickle ({type(error).__name__}: {error}); "
            f"the file is truncated or corrupt: download it again"
        ) from None
    if not isinstance(content, dict):
        raise UserError(f"{path} is not a CIFAR batch (holds a {type(content).__name__})")
    return content


def _read_batch(path: Path, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 [n, 3072] channel-major rows, int64 labels [n])."""
    content = _unpickle(path)
    data, labels = content.get(b"data"), content.get(layout.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UserError(f"{path}: b'data' must be a uint8 array [N, {_PIXELS}]; wrong file?")
    if data.shape[1] != _PIXELS:
        raise UserError(
            f"{path}: images have {data.shape[1]} values, CIFAR has {_PIXELS} (3x32x32)"
        )
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        key = layout.label_key.decode()
        raise UserError(f"{path}: needs {key!r} with one label per image ({len(data)})")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise UserError(
            f"{path}: {layout.label_key.decode()!r} holds something other than integer "
            f"labels; the file is corrupt or not {layout.title}: download it again"
        ) from None
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise UserError(
            f"{path}: labels must lie in 0..{layout.num_classes - 1}, found "
            f"{labels.min()}..{labels.max()}; is this {layout.title}?"
        )
    return data, labels


def _read_split(directory: Path, files: Sequence[str], layout: _Layout) -> ImageSet:
    batches = [_read_batch(directory / name, layout) for name in files]
    data = np.concatenate([data for data, _ in batches]).reshape(-1, 3, _SIDE, _SIDE)
    labels = np.concatenate([labels for _, labels in batches])
    return ImageSet(torch.from_numpy(data), torch.from_numpy(labels))


def read(cfg: DataConfig, with_train: bool = True) -> tuple[ImageSet | None, ImageSet, list[str]]:
    """Train (None unless `with_train`) and test splits plus class names; downloads first if
    allowed and missing. The training batches must be there either way (finding them all is
    how a folder is known to hold the data set), but only read `with_train`."""
    layout = LAYOUTS[cfg.name]
    directory = _batches_dir(cfg, layout)
    meta = _unpickle(directory / layout.meta_file)
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or len(names) != layout.num_classes:
        raise UserError(
            f"{directory / layout.meta_file}: needs {layout.names_key.decode()!r} with "
            f"{layout.num_classes} class names; is this {layout.title}?"
        )
    # Shown, never matched on: a damaged name need not stop the run.
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    train = _read_split(directory, layout.train_files, layout) if with_train else None
    test = _read_split(directory, [layout.test_file], layout)
    return train, test, classes
