"""The real pretrained teachers in ../shared, loaded through a recipe, score their published
accuracy on the real CIFAR-10 test set — the end-to-end proof of the loader and the zoo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from compressor.data import load_test_split
from compressor.engine.teacher import check_teacher
from compressor.errors import UserError
from compressor.models import create_model
from compressor.recipe import DataConfig, parse_recipe
from tests.cli_helpers import run_cli
from tests.data.image_files import damage_training_images, make_imagefolder


def test_shared_teacher_scores_its_published_accuracy(shared_dir: Path) -> None:
    """ResNet-20 on the whole test set. ResNet-56, through the same loader, takes 40 s here
    (docs/BENCHMARKS.md, "Correctness anchors", says how to check it); the suite scores it on
    1,000 images (tests/models/test_teacher.py)."""
    recipe = parse_recipe(
        {
            "teacher": {
                "arch": "resnet20",
                "checkpoint": str(shared_dir / "teachers" / "resnet20-12fca82f.th"),
                "min_accuracy": 90,
            },
            "student": {"arch": "resnet8"},
            "data": {"name": "cifar10", "root": str(shared_dir / "data")},
            "method": {"name": "kd"},
            "train": {"device": "cpu", "eval_batch_size": 500},
        }
    )
    prepared = check_teacher(recipe, "test")
    assert prepared.evaluation.count == 10_000
    assert prepared.summary.accuracy == pytest.approx(91.73, abs=0.05)
    assert prepared.warnings == ()


def test_teacher_check_reads_no_training_image(tmp_path: Path) -> None:
    """Scoring needs the test split alone: a damaged training photo is not opened."""
    root = make_imagefolder(tmp_path, classes=("ant", "bee"))
    damage_training_images(root)
    checkpoint = tmp_path / "teacher.pt"
    torch.save(create_model("resnet8", 2, 3).state_dict(), checkpoint)
    recipe = parse_recipe(
        {
            "teacher": {"arch": "resnet8", "checkpoint": str(checkpoint), "min_accuracy": 0},
            "student": {"arch": "resnet8"},
            "data": {"name": "imagefolder", "root": str(root)},
            "method": {"name": "kd"},
            "train": {"device": "cpu"},
        }
    )
    prepared = check_teacher(recipe, "test")
    assert prepared.evaluation.count == 2
    assert prepared.summary.parameters > 0


def test_a_teacher_whose_logits_are_not_finite_is_refused_before_distilling(
    tmp_path: Path,
) -> None:
    """NaN weights score chance, which the default min_accuracy 0 passes; distillation then
    stopped at its first NaN loss, blaming the learning rate."""
    model = create_model("resnet8", 10, 1)
    with torch.no_grad():
        model.linear.weight.fill_(float("nan"))
    checkpoint = tmp_path / "teacher.pt"
    torch.save(model.state_dict(), checkpoint)
    recipe = parse_recipe(
        {
            "teacher": {"arch": "resnet8", "checkpoint": str(checkpoint)},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"device": "cpu"},
        }
    )
    with pytest.raises(UserError, match="the teacher returns NaN or infinite logits on real"):
        check_teacher(recipe, "test")


def test_a_teacher_trained_on_other_inputs_than_the_data_gives_is_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A student.pt compress wrote records its data's shape and mean/std: a recipe that
    normalises otherwise feeds the teacher inputs it never saw, which scoring may not show."""
    model = create_model("resnet8", 10, 1)
    checkpoint = tmp_path / "student.pt"
    record = {"arch": "resnet8", "image_shape": [1, 8, 8], "mean": [0.5], "std": [0.25]}
    torch.save({**record, "state_dict": model.state_dict()}, checkpoint)
    teacher = {"arch": "resnet8", "checkpoint": str(checkpoint)}
    recipe = tmp_path / "recipe.yaml"
    for data, warned in (({}, True), ({"mean": [0.5], "std": [0.25]}, False)):
        body = {"teacher": teacher, "student": {"arch": "resnet8"}, "method": {"name": "kd"}}
        recipe.write_text(yaml.safe_dump({**body, "data": {"name": "digits", **data}}))
        result = run_cli(capsys, "teacher", str(recipe))
        assert result.code == 0, result.stderr
        assert (
            result.stderr.startswith(
                f"warning: {recipe}: the teacher was trained on 1-channel 8x8 images normalised "
                "with mean [0.5], std [0.25] (recorded in its file), but the recipe's data gives "
                "1-channel 8x8 with "
                "mean [0.3049], std [0.3757]; set data.mean/std (and data.image_size) to the "
                "teacher's"
            )
            is warned
        ), result.stderr


def test_a_teacher_trained_on_other_classes_or_at_chance_is_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A student.pt compress wrote records its class names: folders renamed since shift every
    label, and the teacher scored 0 % without a word (teacher.min_accuracy is 0 unless set).
    Here the teacher answers one class, the rarest in the test split: below chance."""
    test_labels = load_test_split(DataConfig(name="digits")).test.labels
    rarest = int(torch.bincount(test_labels, minlength=10).argmin())
    model = create_model("resnet8", 10, 1)
    head = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(rarest), 10).float())
    classes = [str(digit) for digit in range(10)]
    classes[0], classes[1] = "1", "0"
    record = {"arch": "resnet8", "image_shape": [1, 8, 8], "mean": [0.3049], "std": [0.3757]}
    checkpoint = tmp_path / "student.pt"
    torch.save({**record, "classes": classes, "state_dict": model.state_dict()}, checkpoint)
    body = {
        "teacher": {"arch": "resnet8", "checkpoint": str(checkpoint)},
        "student": {"arch": "resnet8"},
        "method": {"name": "kd"},
        "data": {"name": "digits", "mean": [0.3049], "std": [0.3757]},
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(body))
    result = run_cli(capsys, "teacher", str(recipe))
    assert result.code == 0, result.stderr
    share = 100 * float((test_labels == rarest).float().mean())
    assert result.stderr.splitlines() == [
        f"warning: {recipe}: the teacher was trained on other classes than the data's (its file "
        "records them): class 0 '1' is now '0', class 1 '0' is now '1'; label i is the i-th "
        "sorted folder name, so name the class folders as the teacher's were",
        f"warning: {recipe}: the teacher scores {share:.2f} %, no better than chance (10.00 % "
        "for 10 classes): check teacher.checkpoint and that the classes are in the order it was "
        "trained on; set teacher.min_accuracy to refuse such a teacher",
    ]
    body["teacher"]["min_accuracy"] = 5  # set, but below chance: "set it" would not help
    recipe.write_text(yaml.safe_dump(body))
    again = run_cli(capsys, "teacher", str(recipe))
    assert again.stderr.splitlines()[-1].endswith(
        "trained on; raise teacher.min_accuracy (5 %) above chance to refuse such a teacher"
    )


def test_compress_teacher_says_the_setting_warnings_a_run_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """teacher.min_accuracy 0.5 reads as 50 % and is a bar almost anything passes: the one
    command whose job is that bar passed it without a word."""
    checkpoint = tmp_path / "teacher.pt"
    torch.save(create_model("resnet8", 10, 1).state_dict(), checkpoint)
    recipe = tmp_path / "recipe.yaml"
    teacher = {"arch": "resnet8", "checkpoint": str(checkpoint), "min_accuracy": 0.5}
    body = {"teacher": teacher, "student": {"arch": "resnet8"}, "method": {"name": "kd"}}
    recipe.write_text(yaml.safe_dump(body))
    result = run_cli(capsys, "teacher", str(recipe))
    assert result.code == 0, result.stderr
    assert f"warning: {recipe}: teacher.min_accuracy is 0.5 %" in result.stderr


TRACED_OTHERWISE = """
import torch
from torch import fx, nn


class TracedOtherwise(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, num_classes)
        with torch.no_grad():
            self.norm.running_mean.fill_(0.5)
            self.norm.running_var.fill_(0.1)

    def forward(self, x):
        y = self.conv(x)
        y = self.norm(y) if isinstance(x, fx.Proxy) else self.norm(y) + y
        return self.head(y.mean((2, 3)))


def build(num_classes=10):
    torch.manual_seed(0)
    return TracedOtherwise(num_classes)
"""


def test_a_teacher_the_fold_would_change_is_scored_and_distilled_unfolded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's forward can compute what torch.fx's trace does not see; the folded copy is
    checked on real images, and dropped: its accuracy was reported, and distilled from, as
    the teacher's."""
    (tmp_path / "traced_otherwise.py").write_text(TRACED_OTHERWISE)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = parse_recipe(
        {
            "teacher": {"entrypoint": "traced_otherwise:build"},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"device": "cpu"},
        }
    )
    prepared = check_teacher(recipe, "test")
    assert any(isinstance(module, torch.nn.BatchNorm2d) for module in prepared.model.modules())
