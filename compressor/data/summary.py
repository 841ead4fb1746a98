"""What a run read, in a line, and warnings for classes one split has no image of."""

from __future__ import annotations

from compressor.data.files import require_root
from compressor.data.imagefolder import held_out_note
from compressor.data.sets import Dataset, ImageSet, size_text
from compressor.recipe import DataConfig


def data_summary(dataset: Dataset, config: DataConfig) -> str:
    """What was read, so a user sees a folder that yielded fewer images or classes than they
    meant (files of another format are skipped), and which folder an image folder's test
    split came from."""
    train, test = dataset.train, dataset.test
    source = f" ({held_out_note(require_root(config))})" if config.name == "imagefolder" else ""
    return (
        f"data {dataset.name}: {len(train):,} training and {len(test):,} test images{source} "
        f"of {size_text(*dataset.image_shape[1:])}, {dataset.num_classes} classes"
    )


def missing_class_warnings(dataset: Dataset, config: DataConfig) -> list[str]:
    """A warning for each split that has no image of some classes: the student cannot learn
    those missing from training, and the accuracy never scores those missing from the test
    split."""
    warnings = []
    train, test = dataset.train, dataset.test
    splits = (
        (train, "training", "the student cannot learn them", "max_train_samples", "training"),
        (test, "test", "the test accuracy never scores them", "max_test_samples", "held-out"),
    )
    for split, name, consequence, limit_field, folder in splits:
        missing = _classes_without_images(split, dataset.classes)
        if not missing:
            continue
        limit = getattr(config, limit_field)
        fix = (
            f"data.{limit_field} {limit} is fewer than the classes: raise it"
            if limit is not None and limit < dataset.num_classes
            else f"add images of them to the {folder} split"
        )
        warnings.append(
            f"no {name} image of {len(missing)} of the {dataset.num_classes} classes "
            f"({_first_few(missing)}): {consequence}; {fix}"
        )
    return warnings


def _classes_without_images(split: ImageSet, classes: list[str]) -> list[str]:
    present = set(split.labels.unique().tolist())
    return [name for index, name in enumerate(classes) if index not in present]


def _first_few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
