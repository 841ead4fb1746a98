"""End to end through the `compress` CLI on the embedded digits data: train a teacher, distil
it with every method, and check the run directory against an independent evaluation."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from compressor.cli import app
from compressor.data import load_dataset
from compressor.engine.context import RunObserver
from compressor.engine.run import not_smaller_warning, run_training
from compressor.engine.scoring import ModelSummary
from compressor.errors import CompressorWarning, UserError
from compressor.models import count_flops, count_parameters, create_model
from compressor.recipe import DataConfig, load_recipe
from compressor.rundir import RunDir, read_completed_run
from tests.cli_helpers import run_cli
from tests.data.image_files import make_imagefolder, save_image
from tests.disk_full import compress_with_file_size_limit, needs_file_size_limits
from tests.export.helpers import one_error_line

RUN_FILES = [
    "recipe.yaml",
    "manifest.json",
    "checkpoints/last.pt",
    "student.pt",
    "metrics.jsonl",
    "report.json",
    "report.md",
    "report.html",
]


def write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def small_recipe(path: Path, output: Path, **train: object) -> Path:
    """A ResNet-8 trained without a teacher on the digits, batch 64 on the CPU; `train` sets
    the rest of the train: section (epochs, deterministic, max_steps_per_epoch...)."""
    return write(
        path,
        {
            "student": {"arch": "resnet8"},
            "train": {"batch_size": 64, "device": "cpu", **train},
            "output": {"dir": str(output)},
        },
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def teacher_checkpoint(workdir: Path) -> Path:
    """A resnet20 teacher trained for a few epochs on digits with `compress train`."""
    recipe = write(
        workdir / "teacher.yaml",
        {
            "student": {"arch": "resnet20"},
            "train": {"epochs": 3, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    result = CliRunner().invoke(app, ["train", str(recipe)])
    assert result.exit_code == 0, result.output
    return workdir / "teacher" / "student.pt"


def independent_accuracy(student_file: Path) -> float:
    """Rebuild the student from student.pt and score it without the engine's code."""
    record = torch.load(student_file, map_location="cpu", weights_only=True)
    model = create_model(record["arch"], record["num_classes"], record["image_shape"][0])
    model.load_state_dict(record["state_dict"])
    model.eval()
    test = load_dataset(DataConfig(name="digits")).test
    mean = torch.tensor(record["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(record["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = model((test.images.float() / 255 - mean) / std)
    return 100.0 * (logits.argmax(1) == test.labels).sum().item() / test.labels.numel()


@pytest.mark.parametrize("method", ["ce", "kd", "bss", "triplet", "amkd"])
def test_distill_writes_a_complete_run(
    workdir: Path,
    teacher_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
) -> None:
    recipe = write(
        workdir / f"distill-{method}.yaml",
        {
            "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
            "student": {"arch": "resnet8"},
            "method": {"name": method},
            "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    result = run_cli(capsys, "distill", str(recipe))
    assert result.code == 0, result.stderr
    assert "will not run faster" not in result.stderr
    run = workdir / f"distill-{method}"
    for name in RUN_FILES:
        assert (run / name).is_file(), name

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["versions"]["torch"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in ("loss", "lr", "train_accuracy", "test_accuracy", "images_per_second"):
        assert all(key in m for m in metrics), key
    if method in ("bss", "amkd"):
        assert metrics[0]["stat_attacked"] > 0
        assert 0.0 <= metrics[0]["stat_boundary_fraction"] <= 1.0

    report = json.loads((run / "report.json").read_text())
    assert report["schema_version"] == 1
    student_accuracy = report["results"]["student"]["accuracy"]
    assert student_accuracy == pytest.approx(independent_accuracy(run / "student.pt"), abs=1e-6)
    assert student_accuracy == pytest.approx(metrics[-1]["test_accuracy"])
    assert report["results"]["teacher"]["accuracy"] > 50
    assert 0 <= report["results"]["top1_agreement"] <= 100
    assert report["results"]["student"]["parameters"] < report["results"]["teacher"]["parameters"]
    # The teacher's size is its architecture's, as when it was trained (batch norm unfolded),
    # so "N× fewer parameters" compares like with like.
    as_trained = json.loads((workdir / "teacher" / "report.json").read_text())["results"]
    assert report["results"]["teacher"]["parameters"] == as_trained["student"]["parameters"]
    assert report["results"]["teacher"]["flops"] == as_trained["student"]["flops"]
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert f"student {student_accuracy:.2f}" not in result.stderr


def test_a_student_costlier_than_its_teacher_is_warned_of_before_training(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate's speedup rule would fail it only at the end of a long run."""
    recipe = write(
        tmp_path / "bigger.yaml",
        {
            "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
            "student": {"arch": "resnet32"},
            "method": {"name": "kd"},
            "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "max_steps_per_epoch": 1},
            "output": {"dir": str(tmp_path)},
        },
    )
    result = run_cli(capsys, "distill", str(recipe))
    assert result.code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "will not run faster" in line]
    assert warned == [
        "warning: the student resnet32 costs 8.6 MFLOPs per 8×8 image, no fewer than the "
        "teacher's 5.0: it will not run faster; it has 463,866 parameters, no fewer than the "
        "teacher's 269,434: its file will not be smaller; choose a smaller student"
    ]


def test_a_student_with_more_parameters_than_its_teacher_is_warned_of() -> None:
    """A wide, shallow student costs fewer FLOPs but makes a larger file: a compression
    toolkit distilled torchvision's mobilenet_v3_small (5.7× a CIFAR ResNet-20's parameters)
    into a larger model without a word."""
    student = create_model("mobilenet_v3_small", 10, 3)
    teacher = create_model("resnet20", 10, 3)
    shape = (3, 32, 32)
    summary = ModelSummary(91.73, count_parameters(teacher), count_flops(teacher, shape))
    assert not_smaller_warning("mobilenet_v3_small", student, summary, shape) == (
        "the student mobilenet_v3_small has 1,528,106 parameters, no fewer than the teacher's "
        "269,722: its file will not be smaller; choose a smaller student"
    )
    smaller = create_model("resnet8", 10, 3)
    assert not_smaller_warning("resnet8", smaller, summary, shape) is None


def test_eval_every_scores_some_epochs_and_always_the_last(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skipping the test evaluation changes what is logged, never what is trained."""
    runs = {}
    for eval_every in (1, 2):
        recipe = write(
            workdir / f"every-{eval_every}.yaml",
            {
                "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
                "student": {"arch": "resnet8"},
                "method": {"name": "kd"},
                "train": {
                    "epochs": 3,
                    "batch_size": 64,
                    "device": "cpu",
                    "deterministic": True,
                    "eval_every": eval_every,
                },
                "output": {"dir": str(workdir)},
            },
        )
        result = run_cli(capsys, "distill", str(recipe))
        assert result.code == 0, result.stderr
        runs[eval_every] = (workdir / f"every-{eval_every}", result.stdout)

    every_epoch, every_epoch_out = runs[1]
    sparse, sparse_out = runs[2]
    logged = [json.loads(line) for line in (sparse / "metrics.jsonl").read_text().splitlines()]
    assert [("test_accuracy" in m, "test_loss" in m) for m in logged] == [
        (False, False),
        (True, True),
        (True, True),
    ]
    assert "epoch 1/3: loss" in sparse_out and "test top-1" not in sparse_out.split("epoch 2/3")[0]
    assert every_epoch_out.count("test top-1") == sparse_out.count("test top-1") + 1

    first = torch.load(every_epoch / "student.pt", weights_only=True)["state_dict"]
    second = torch.load(sparse / "student.pt", weights_only=True)["state_dict"]
    for key in first:
        assert torch.equal(first[key], second[key]), key
    report = json.loads((sparse / "report.json").read_text())
    assert report["results"]["student"]["accuracy"] == pytest.approx(logged[-1]["test_accuracy"])
    assert report["results"]["student"]["accuracy"] == pytest.approx(
        independent_accuracy(sparse / "student.pt"), abs=1e-6
    )
    assert (sparse / "report.html").read_text().count("data:image/png;base64,") == 3


def test_amkd_feature_embedding_runs_with_a_checkpoint_teacher(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine folds the teacher's batch norms; the folded teacher keeps forward_features."""
    recipe = write(
        workdir / "features.yaml",
        {
            "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
            "student": {"arch": "resnet8"},
            "method": {"name": "amkd", "embedding": "features"},
            "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 3, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    result = run_cli(capsys, "distill", str(recipe))
    assert result.code == 0, result.stderr
    metrics = json.loads((workdir / "features" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["stat_attacked"] > 0 and metrics["loss_triplet"] > 0


def test_a_method_refused_at_build_time_leaves_no_run_behind(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input found while building the method (or probing the student, tests/models/
    test_probe.py) comes before the run directory is claimed: no half-made run, and an
    --overwrite keeps the old run whole."""
    body = {
        "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
        "student": {"arch": "resnet8"},
        "method": {"name": "amkd", "embedding": "features"},
        "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
        "output": {"dir": str(workdir)},
    }
    # resnet20's penultimate features are 64 wide, mobilenetv2's 1280.
    refused = {**body, "student": {"arch": "mobilenetv2"}}
    recipe = write(workdir / "refused.yaml", refused)
    result = run_cli(capsys, "distill", str(recipe))
    assert "the teacher has 64 and the student 1280" in one_error_line(result)
    assert not (workdir / "refused").exists()
    recipe = write(workdir / "refused.yaml", body)
    assert run_cli(capsys, "distill", str(recipe)).code == 0
    run = workdir / "refused"
    kept = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    recipe = write(workdir / "refused.yaml", refused)
    assert run_cli(capsys, "distill", str(recipe), "--overwrite").code == 2
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == kept


FEATURE_TEACHERS = """
import torch
from torch import nn


class Unpooled(nn.Module):
    num_features = 64  # resnet8's

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, 64, 3, padding=1)
        self.fc = nn.Linear(64, num_classes)

    def forward_features(self, x):
        return torch.relu(self.conv(x))  # pooled only in forward_head

    def forward_head(self, features):
        return self.fc(features.mean((2, 3)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class FeaturesFail(Unpooled):
    def forward_features(self, x):
        raise ValueError("no features here")

    def forward(self, x):
        return self.forward_head(torch.relu(self.conv(x)))


def unpooled(num_classes=10):
    torch.manual_seed(0)
    return Unpooled(num_classes)


def features_fail(num_classes=10):
    torch.manual_seed(0)
    return FeaturesFail(num_classes)
"""


@pytest.mark.parametrize(
    ("entrypoint", "says"),
    [
        ("unpooled", "teacher's forward_features to return [batch, num_features] = [batch, 64]"),
        ("features_fail", "the teacher's forward_features fails on a batch of shape"),
    ],
)
def test_a_teacher_whose_features_cannot_serve_is_refused_as_bad_input(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    entrypoint: str,
    says: str,
) -> None:
    """A timm-style teacher (features pooled only in its head), or one whose forward_features
    fails: `recipe validate` refused the first, but distill crashed in the triplet (exit 3,
    a failed run left), and both crashed `recipe validate` on the second."""
    (tmp_path / "feature_teachers.py").write_text(FEATURE_TEACHERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = write(
        tmp_path / "features.yaml",
        {
            "teacher": {"entrypoint": f"feature_teachers:{entrypoint}"},
            "student": {"arch": "resnet8"},
            "method": {"name": "amkd", "embedding": "features"},
            "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
            "output": {"dir": str(tmp_path / "runs")},
        },
    )
    for command in (["recipe", "validate"], ["distill"]):
        result = run_cli(capsys, *command, str(recipe))
        assert result.code == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and says in errors[0], result.stderr
        assert "Traceback" not in result.stderr  # (a warning that it scores at chance too)
    assert not (tmp_path / "runs" / "features").exists()
    sys.modules.pop("feature_teachers", None)


NAN_TEACHER = """
import torch
from torch import nn


class NaNTeacher(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        logits = self.head(x.flatten(1))
        if x.shape[0] > 2:  # finite on the two images it is first checked on
            logits[-1] = float("nan")
        return logits


def build(num_classes=10):
    torch.manual_seed(0)
    return NaNTeacher(num_classes)
"""


def test_a_teacher_whose_logits_are_nan_on_an_image_is_refused_not_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """argmax over NaN picks class 0: an image whose logits are NaN was scored as if the
    teacher had answered, and the student was distilled from NaN on it."""
    (tmp_path / "nan_teacher.py").write_text(NAN_TEACHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = write(
        tmp_path / "nan.yaml",
        {
            "teacher": {"entrypoint": "nan_teacher:build"},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
            "output": {"dir": str(tmp_path / "runs")},
        },
    )
    result = run_cli(capsys, "distill", str(recipe))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.code == 2 and errors == [
        "error: the teacher's logits are NaN or infinite on 1 of the 360 test images of "
        "digits; check teacher.checkpoint, and that data.mean/std match the teacher's training"
    ], result.stderr
    assert not (tmp_path / "runs" / "nan").exists()
    sys.modules.pop("nan_teacher", None)


def test_existing_run_is_not_overwritten(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = workdir / "teacher.yaml"
    before = (workdir / "teacher" / "student.pt").read_bytes()
    result = run_cli(capsys, "train", str(recipe))
    assert result.code == 2
    assert "already holds a completed run" in result.stderr and "--overwrite" in result.stderr
    assert (workdir / "teacher" / "student.pt").read_bytes() == before
    assert "reading data set" not in result.stdout  # refused before any slow work


def test_resuming_a_completed_whole_run_trains_and_scores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CI workflow resumes a run restored from its cache: the teacher and the student
    were scored on the whole test set again (most of a minute) for figures report.json has.
    The settings free to change still reach its recipe.yaml; a lost report is written again."""
    recipe = small_recipe(tmp_path / "done.yaml", tmp_path, epochs=1, max_steps_per_epoch=2)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    run = tmp_path / "done"
    kept = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    body = yaml.safe_load(recipe.read_text())
    write(recipe, {**body, "gate": {"max_drop": 3.0}})
    again = run_cli(capsys, "train", str(recipe), "--resume")
    assert again.code == 0, again.stderr
    assert f"{run} has completed and its files are whole: nothing to train" in again.stdout
    assert "reading data set" not in again.stdout
    assert yaml.safe_load((run / "recipe.yaml").read_text())["gate"]["max_drop"] == 3.0
    changed = {path for path, data in kept.items() if path.read_bytes() != data}
    assert changed == {run / "recipe.yaml"}  # its manifest too where it was resumed elsewhere
    read_completed_run(RunDir(run))  # export and the gate take it as it is
    moved = tmp_path / "moved" / "done.yaml"  # the recipe moved: messages name it there
    moved.parent.mkdir()
    shutil.copy(recipe, moved)
    assert run_cli(capsys, "train", str(moved), "--resume").code == 0
    assert json.loads((run / "manifest.json").read_text())["recipe_file"] == str(moved)

    (run / "report.md").unlink()
    again = run_cli(capsys, "train", str(recipe), "--resume")
    assert "has trained its last epoch (1); writing its student.pt" in again.stdout
    assert (run / "report.md").is_file()


def test_a_data_sets_default_written_out_resumes_the_run_it_left_to_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flip: false` on digits (whose default it is) trains the same run: the resume goes on,
    the run's recipe.yaml stays as it was written (the hash its manifest records holds, so
    export and the gate take it), and a value that does something else is still refused."""
    recipe = small_recipe(tmp_path / "flip.yaml", tmp_path, epochs=1, max_steps_per_epoch=2)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    run = tmp_path / "flip"
    written = (run / "recipe.yaml").read_bytes()
    body = yaml.safe_load(recipe.read_text())
    write(recipe, {**body, "data": {"name": "digits", "flip": False, "crop_padding": 1}})
    again = run_cli(capsys, "train", str(recipe), "--resume")
    assert again.code == 0, again.stderr
    assert (run / "recipe.yaml").read_bytes() == written
    read_completed_run(RunDir(run))
    write(recipe, {**body, "data": {"name": "digits", "flip": True}})
    refused = one_error_line(run_cli(capsys, "train", str(recipe), "--resume"))
    assert "the recipe changed since" in refused and "data.flip: (unset) → true" in refused


def test_train_resuming_a_distill_run_names_the_command_that_started_it(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write(
        workdir / "started-by-distill.yaml",
        {
            "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=True, observer=Interrupt(1))
    refused = run_cli(capsys, "train", str(recipe), "--resume")
    assert refused.code == 2
    assert f"resume it with `compress distill {recipe} --resume`" in refused.stderr
    assert "reading data set" not in refused.stdout
    assert run_cli(capsys, "distill", str(recipe), "--resume").code == 0

    # The other way round: a run `compress train` started, resumed by `distill`.
    with pytest.raises(KeyboardInterrupt):
        run_training(
            load_recipe(recipe), recipe, distill=False, overwrite=True, observer=Interrupt(1)
        )
    refused = run_cli(capsys, "distill", str(recipe), "--resume")
    assert f"resume it with `compress train {recipe} --resume`" in refused.stderr


def test_weak_teacher_stops_before_anything_is_written(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write(
        workdir / "picky.yaml",
        {
            "teacher": {
                "arch": "resnet20",
                "checkpoint": str(teacher_checkpoint),
                "min_accuracy": 99.99,
            },
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "output": {"dir": str(workdir)},
        },
    )
    result = run_cli(capsys, "distill", str(recipe))
    assert result.code == 2
    assert "below teacher.min_accuracy 99.99" in result.stderr
    assert not (workdir / "picky").exists()


class Interrupt(RunObserver):
    """Stops a run when `epoch` is about to start, as a kill between epochs would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


class Crash(Interrupt):
    """Fails as a bug in user code (a teacher entrypoint, a data set) would, and keeps what the
    run told the user."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if epoch == self.epoch:
            raise RuntimeError("boom")


def test_a_crashed_run_is_marked_failed_and_export_says_how_to_resume(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = small_recipe(workdir / "crash.yaml", workdir, epochs=2)
    crash = Crash(1)
    with pytest.raises(RuntimeError, match="boom"):
        run_training(load_recipe(recipe), recipe, distill=False, observer=crash)
    run = workdir / "crash"
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    assert crash.messages[-1].endswith(
        f"failed; continue from the last finished epoch with: compress train {recipe} --resume"
    )
    line = one_error_line(run_cli(capsys, "export", str(run)))
    assert "the run failed, not completed" in line
    assert run_cli(capsys, "train", str(recipe), "--resume").code == 0
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"


def test_resume_continues_to_the_same_student(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {
        "student": {"arch": "resnet8"},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "deterministic": True},
        "output": {"dir": str(workdir)},
    }
    straight = write(workdir / "straight.yaml", base)
    assert run_cli(capsys, "train", str(straight)).code == 0

    interrupted = write(workdir / "interrupted.yaml", base)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(interrupted), interrupted, distill=False, observer=Interrupt(1))
    run = workdir / "interrupted"
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert not (run / "student.pt").exists()

    result = run_cli(capsys, "train", str(interrupted), "--resume")
    assert result.code == 0, result.stderr
    assert "resuming" in result.stdout
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    first = torch.load(workdir / "straight" / "student.pt", weights_only=True)["state_dict"]
    second = torch.load(run / "student.pt", weights_only=True)["state_dict"]
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@needs_file_size_limits
def test_a_checkpoint_that_cannot_be_written_stops_the_run_in_one_line_and_it_resumes(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk that fills up mid-run is the machine's to put right, not a crash: one line
    naming the file, why, and the command to continue; exit 2; the manifest says failed; the
    last checkpoint stays whole, and the run resumes from it once the space is back."""
    recipe = small_recipe(workdir / "full.yaml", workdir, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    run = RunDir(workdir / "full")
    after_epoch_one = run.checkpoint.read_bytes()

    full = compress_with_file_size_limit(
        len(after_epoch_one) // 2, "train", str(recipe), "--resume"
    )
    assert full.returncode == 2, full.stderr
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {run.checkpoint}: cannot write it (File too large); the file is larger than "
        "this process may write (see `ulimit -f`); the run stopped; continue from the last "
        f"finished epoch with: compress train {recipe} --resume"
    ]
    assert json.loads(run.manifest.read_text())["status"] == "failed"
    assert run.checkpoint.read_bytes() == after_epoch_one

    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr
    assert "warning" not in resumed.stdout + resumed.stderr
    assert json.loads(run.manifest.read_text())["status"] == "completed"
    assert [json.loads(line)["epoch"] for line in run.metrics.read_text().splitlines()] == [1, 2]


def test_resume_refuses_a_teacher_replaced_since_the_run_started(
    workdir: Path, teacher_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rest of the epochs would be distilled from another teacher than the first ones."""
    teacher = tmp_path / "teacher.pt"
    shutil.copy(teacher_checkpoint, teacher)
    recipe = write(
        tmp_path / "pinned.yaml",
        {
            "teacher": {"arch": "resnet20", "checkpoint": str(teacher)},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 2, "batch_size": 64, "max_steps_per_epoch": 3, "device": "cpu"},
            "output": {"dir": str(tmp_path)},
        },
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=True, observer=Interrupt(1))
    pinned = json.loads((tmp_path / "pinned" / "manifest.json").read_text())
    assert len(pinned["teacher_weights_sha256"]) == 64
    record = torch.load(teacher, weights_only=True)
    record["state_dict"] = {
        k: v + 1e-3 if v.is_floating_point() else v for k, v in record["state_dict"].items()
    }
    torch.save(record, teacher)

    result = run_cli(capsys, "distill", str(recipe), "--resume")
    line = one_error_line(result)
    assert f"{teacher}: not the teacher {tmp_path / 'pinned'} was distilled from" in line
    assert "reading data set" not in result.stdout + result.stderr  # refused before the data
    assert (
        f"put that teacher back there, or start over with `compress distill {recipe} --overwrite`"
        in line
    )
    shutil.copy(teacher_checkpoint, teacher)
    assert run_cli(capsys, "distill", str(recipe), "--resume").code == 0
    completed = json.loads((tmp_path / "pinned" / "manifest.json").read_text())
    assert completed["teacher_weights_sha256"] == pinned["teacher_weights_sha256"]


def test_a_finished_runs_lost_files_are_written_again_from_its_last_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged manifest or a lost student.pt need no retraining: export says to --resume,
    which finds the last epoch done and writes the run's files again."""
    recipe = small_recipe(tmp_path / "lost.yaml", tmp_path, epochs=1)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    run = tmp_path / "lost"
    trained = torch.load(run / "student.pt", weights_only=True)["state_dict"]
    (run / "student.pt").unlink()
    line = one_error_line(run_cli(capsys, "export", str(run)))
    assert "no student.pt" in line and f"`compress train {recipe} --resume`" in line
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as patch:  # output.dir may be relative to where it ran
        patch.chdir(elsewhere)
        line = one_error_line(run_cli(capsys, "export", str(run)))
    assert f"`cd {Path.cwd()} && compress train {recipe} --resume`" in line
    copy = shutil.copytree(run, tmp_path / "archive")  # that command would repair the original
    assert "`compress train RECIPE --resume`" in one_error_line(
        run_cli(capsys, "export", str(copy))
    )
    recipe.rename(tmp_path / "moved.yaml")  # a path that no longer works is not offered
    assert "`compress train RECIPE --resume`" in one_error_line(run_cli(capsys, "export", str(run)))
    (tmp_path / "moved.yaml").rename(recipe)
    (run / "manifest.json").write_text('{"status": "compl', encoding="utf-8")
    line = one_error_line(run_cli(capsys, "export", str(run)))
    assert "manifest.json: missing or unreadable" in line
    assert "`compress train RECIPE --resume`" in line  # the manifest held the recipe's path

    again = run_cli(capsys, "train", str(recipe), "--resume")
    assert again.code == 0
    assert (
        "has trained its last epoch (1); writing its student.pt, report and manifest again"
    ) in again.stdout
    assert "resuming" not in again.stdout
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    rebuilt = torch.load(run / "student.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(trained[key], rebuilt[key]) for key in trained)
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()] == [1]


def test_a_damaged_metrics_line_does_not_stop_the_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A half-written line (a disk error, a kill mid-write elsewhere) is dropped, with a word."""
    recipe = small_recipe(tmp_path / "metrics.yaml", tmp_path, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    metrics = tmp_path / "metrics" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 2, "lo\n[]\n', encoding="utf-8")

    result = run_cli(capsys, "train", str(recipe), "--resume")
    assert result.code == 0, result.stderr
    assert f"warning: {metrics}: dropped 2 damaged line(s)" in result.stderr
    assert [json.loads(line)["epoch"] for line in metrics.open()] == [1, 2]


def test_brackets_in_paths_are_printed_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rich would read `[/b]` as a closing tag (and crash) or `[v2]` as a style (and drop it)."""
    runs = tmp_path / "od[/b] d"
    recipe = small_recipe(tmp_path / "exp[v2].yaml", runs, epochs=2, max_steps_per_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    result = run_cli(capsys, "train", str(recipe), "--resume")
    assert result.code == 0, result.stderr
    assert f"resuming {runs / 'exp[v2]'} after epoch 1" in result.stdout
    # Quoted, so that it pastes into a shell as it is.
    report = shlex.quote(str(runs / "exp[v2]" / "report.html"))
    assert f"reports: {report} (also .md, .json)" in result.stdout.replace("\n", "")


def test_a_run_started_before_a_settings_check_still_resumes_and_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings that would be ignored (here gamma on a cosine schedule) are refused for a new
    run, but a run an older compressor started with them goes on, and is exported, as is."""
    recipe = small_recipe(tmp_path / "old.yaml", tmp_path, epochs=2, max_steps_per_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    run = tmp_path / "old"
    as_started_by_an_older_compressor(run)
    for path in (recipe, run / "recipe.yaml"):  # as the older compressor wrote them
        data = yaml.safe_load(path.read_text())
        data["train"]["schedule"] = {**data["train"].get("schedule", {}), "gamma": 0.5}
        path.write_text(yaml.safe_dump(data))

    refused = run_cli(capsys, "recipe", "validate", str(recipe))
    assert refused.code == 2 and "a cosine schedule would ignore them" in refused.stderr
    assert run_cli(capsys, "train", str(recipe), "--resume").code == 0
    recipe_of_run, manifest = read_completed_run(RunDir(run))
    assert recipe_of_run.train.schedule.gamma == 0.5 and manifest["status"] == "completed"


class Messages(RunObserver):
    """Keeps what the run told its user."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def test_an_observer_that_does_not_tell_warnings_apart_hears_them_as_lines(
    tmp_path: Path,
) -> None:
    """The Python API: an observer with only `message` still hears each warning, marked."""
    recipe = small_recipe(tmp_path / "few.yaml", tmp_path, epochs=1, batch_size=8)
    edit = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**edit, "data": {"max_train_samples": 5}}))
    heard = Messages()
    run_training(load_recipe(recipe), recipe, distill=False, observer=heard)
    assert any(m.startswith("warning: no training image of 5") for m in heard.messages)


def test_a_library_caller_without_an_observer_hears_warnings_as_python_warnings(
    tmp_path: Path,
) -> None:
    """run_training(...) with no observer printed nothing and warned of nothing: the warning
    `compress train` prints was lost. It is a CompressorWarning now."""
    recipe = small_recipe(tmp_path / "few.yaml", tmp_path, epochs=1, batch_size=8)
    edit = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**edit, "data": {"max_train_samples": 5}}))
    with pytest.warns(CompressorWarning, match="^no training image of 5"):
        run_training(load_recipe(recipe), recipe, distill=False)


class InterruptWhileReading(Messages):
    """Ctrl-C while the data set is read: before the run directory is touched."""

    def message(self, text: str) -> None:
        super().message(text)
        if "reading data set" in text:
            raise KeyboardInterrupt


def test_an_overwrite_stopped_before_it_started_says_nothing_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "continue with --resume": that would go on with the run the user meant to replace."""
    recipe = small_recipe(tmp_path / "kept.yaml", tmp_path, epochs=1, max_steps_per_epoch=2)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    run = tmp_path / "kept"
    before = (run / "manifest.json").read_text()
    observer = InterruptWhileReading()
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, overwrite=True, observer=observer)
    assert observer.messages[-1] == f"stopped before the run started; {run} is as it was"
    assert (run / "manifest.json").read_text() == before
    assert (run / "checkpoints" / "last.pt").is_file()

    # The quickstart's steps say how to go on with the quickstart, whenever they stop.
    observer = InterruptWhileReading()
    with pytest.raises(KeyboardInterrupt):
        run_training(
            load_recipe(recipe),
            recipe,
            distill=False,
            overwrite=True,
            observer=observer,
            continue_with="compress quickstart",
        )
    assert observer.messages[-1] == (
        f"stopped before the run started; {run} is as it was; continue with: compress quickstart"
    )


def test_an_overwrite_stopped_once_it_claimed_the_run_says_start_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Claiming the run for --overwrite sets the old run aside before the new manifest is
    written: a Ctrl-C in between must not say the run is as it was, and says where it went."""
    recipe = small_recipe(tmp_path / "claimed.yaml", tmp_path, epochs=1, max_steps_per_epoch=2)
    assert run_cli(capsys, "train", str(recipe)).code == 0

    def ctrl_c() -> str:  # the first call after the claim: the new run's start time
        raise KeyboardInterrupt

    monkeypatch.setattr("compressor.engine.run.now_iso", ctrl_c)
    observer = Messages()
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, overwrite=True, observer=observer)
    assert not (tmp_path / "claimed" / "checkpoints" / "last.pt").exists()
    aside = tmp_path / "claimed.replaced"
    assert (aside / "checkpoints" / "last.pt").is_file()
    assert observer.messages[-1].startswith(
        f"interrupted before its first checkpoint was written; start again with: compress train "
        f"{recipe} --overwrite (the run it replaced is kept in {aside} until it completes"
    )


def test_the_run_an_overwrite_replaced_stays_whole_until_the_new_one_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old run can be gone back to, and exported, while its replacement is unfinished;
    it goes when the replacement completes (resumed or not)."""
    recipe = small_recipe(tmp_path / "swap.yaml", tmp_path, epochs=2, max_steps_per_epoch=2)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    run, aside = tmp_path / "swap", tmp_path / "swap.replaced"
    old_student = (run / "student.pt").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        run_training(
            load_recipe(recipe), recipe, distill=False, overwrite=True, observer=Interrupt(1)
        )
    assert (aside / "student.pt").read_bytes() == old_student
    assert not (run / "student.pt").exists()
    read_completed_run(RunDir(aside))  # the old run, whole: export and the gate can read it
    with pytest.raises(UserError, match=f"the run it replaced is kept in {aside}"):
        read_completed_run(RunDir(run))

    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0
    assert f"removed {aside}, the run this one replaced" in resumed.stdout + resumed.stderr
    assert not aside.exists()
    assert read_completed_run(RunDir(run))[1]["status"] == "completed"


def test_bank_mode_reuses_samples_and_refreshes_after_a_resume(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bank_epochs 2: epoch 2 takes its boundary samples from the bank (no attack step), but
    a run resumed at epoch 2 has no bank (it is not checkpointed) and attacks again."""
    base = {
        "teacher": {"arch": "resnet20", "checkpoint": str(teacher_checkpoint)},
        "student": {"arch": "resnet8"},
        "method": {"name": "bss", "bank_epochs": 2},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
        "output": {"dir": str(workdir)},
    }
    straight = write(workdir / "bank.yaml", base)
    assert run_cli(capsys, "distill", str(straight)).code == 0
    refresh, reuse = [json.loads(line) for line in (workdir / "bank" / "metrics.jsonl").open()]
    assert refresh["stat_mean_steps"] > 0
    assert reuse["stat_mean_steps"] == 0
    assert reuse["stat_attacked"] > 0 and reuse["loss_bss"] > 0

    resumed = write(workdir / "bank-resumed.yaml", base)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(resumed), resumed, distill=True, observer=Interrupt(1))
    again = run_cli(capsys, "distill", str(resumed), "--resume")
    assert again.code == 0
    assert (
        "warning: bank mode: the bank of boundary samples is not checkpointed, so epoch 2 "
        "attacks again and the samples of earlier windows are gone: the run continues only "
        "approximately"
    ) in again.stderr.replace("\n", " ")
    lines = (workdir / "bank-resumed" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["stat_mean_steps"] > 0

    # beta is 0 after half of the 2 epochs: the resumed epoch does not attack, nothing said.
    base["method"]["weights"] = {"beta_stop_fraction": 0.5}
    base["train"]["max_steps_per_epoch"] = 2
    late = write(workdir / "bank-late.yaml", base)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(late), late, distill=True, observer=Interrupt(1))
    again = run_cli(capsys, "distill", str(late), "--resume")
    assert again.code == 0 and "bank mode" not in again.stderr


def _truncate(last: Path) -> None:
    last.write_bytes(last.read_bytes()[:1000])  # a disk error after the write


def _edited(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Damage that still unpickles (a flipped byte in a key name, a lost entry)."""

    def damage(last: Path) -> None:
        state = torch.load(last, weights_only=True)
        edit(state)
        torch.save(state, last)

    return damage


def _rename_a_weight(state: dict) -> None:
    name = next(iter(state["student"]))
    state["student"]["Gayer" + name[5:]] = state["student"].pop(name)


def _drop_the_param_groups(state: dict) -> None:
    del state["optimizer"]["param_groups"]


def _shrink_a_momentum_buffer(state: dict) -> None:
    buffers = next(iter(state["optimizer"]["state"].values()))
    buffers["momentum_buffer"] = buffers["momentum_buffer"].flatten()[:1]


def _shorten_the_random_state(state: dict) -> None:
    state["rng"]["cpu"] = torch.zeros(3)


def _damage_a_rank_random_state(state: dict) -> None:
    """As a torchrun checkpoint holds them: each process restores its own."""
    state["rng_ranks"] = [dict(state["rng"]), {"cpu": torch.zeros(3, dtype=torch.uint8)}]


def _negate_the_epoch(state: dict) -> None:
    state["epoch"] = -3


def _empty_a_weight(state: dict) -> None:
    name = next(iter(state["student"]))
    state["student"][name] = state["student"][name].to("meta")


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_truncate, "damaged or truncated"),
        (_edited(_rename_a_weight), "damaged (its student weights name other tensors"),
        (_edited(_drop_the_param_groups), "damaged (its optimizer state is incomplete"),
        (_edited(_shrink_a_momentum_buffer), "damaged (its optimizer state does not fit"),
        (_edited(_shorten_the_random_state), "damaged (its random-number state cannot be restored"),
        (_edited(_damage_a_rank_random_state), "damaged (its random-number state cannot be"),
        (_edited(_negate_the_epoch), "damaged (its epoch is not a count of epochs"),
        (_edited(_empty_a_weight), "damaged (its student weight conv1.weight is a meta tensor"),
    ],
    ids=[
        "truncated",
        "renamed weight",
        "no param_groups",
        "momentum buffer",
        "random state",
        "a rank's random state",
        "negative epoch",
        "meta weight",
    ],
)
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], None], said: str
) -> None:
    """Restoring a state that loads but does not fit used to crash the resume, every time it
    was retried: it is damage like a truncated file. The checkpoint before it is used, and
    the run ends as if never interrupted."""
    base = {
        "student": {"arch": "resnet8"},
        "train": {"epochs": 3, "batch_size": 64, "device": "cpu", "deterministic": True},
        "output": {"dir": str(tmp_path)},
    }
    straight = write(tmp_path / "straight.yaml", base)
    assert run_cli(capsys, "train", str(straight)).code == 0
    damaged = write(tmp_path / "damaged.yaml", base)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(damaged), damaged, distill=False, observer=Interrupt(2))
    last = tmp_path / "damaged" / "checkpoints" / "last.pt"
    damage(last)

    result = run_cli(capsys, "train", str(damaged), "--resume")
    assert result.code == 0, result.stderr
    warned = " ".join(result.stderr.split())  # a warning: on stderr
    assert f"warning: {last}: {said}" in warned
    assert "resuming from the checkpoint before it" in warned
    first = torch.load(tmp_path / "straight" / "student.pt", weights_only=True)["state_dict"]
    second = torch.load(tmp_path / "damaged" / "student.pt", weights_only=True)["state_dict"]
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_resume_refuses_a_checkpoint_another_run_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `last.pt` copied in from another run (here: another seed) would train on as this
    run's: refused in one line before the data is read, nothing changed; with its own
    checkpoint back the run resumes and keeps its id."""
    runs = {}
    for seed in (0, 1):
        recipe = small_recipe(
            tmp_path / f"seed{seed}.yaml", tmp_path, epochs=2, max_steps_per_epoch=2, seed=seed
        )
        with pytest.raises(KeyboardInterrupt):
            run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
        runs[seed] = (recipe, RunDir(tmp_path / f"seed{seed}"))
    recipe, run = runs[1]
    own_checkpoint = run.checkpoint.read_bytes()
    run_id = json.loads(run.manifest.read_text())["run_id"]
    shutil.copyfile(runs[0][1].checkpoint, run.checkpoint)
    manifest_before = run.manifest.read_text()

    said = run_cli(capsys, "train", str(recipe), "--resume")
    refused = one_error_line(said)
    assert f"{run.checkpoint}: saved by another run" in refused
    assert "reading data set" not in said.stdout
    assert "start over with --overwrite" in refused
    assert run.manifest.read_text() == manifest_before
    assert run.checkpoint.read_bytes() == runs[0][1].checkpoint.read_bytes()

    run.checkpoint.write_bytes(own_checkpoint)
    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr
    manifest = json.loads(run.manifest.read_text())
    assert manifest["status"] == "completed" and manifest["run_id"] == run_id
    assert torch.load(run.checkpoint, weights_only=True)["run_id"] == run_id


def as_started_by_an_older_compressor(run: Path) -> None:
    """Its running manifest recorded no hash of recipe.yaml (recorded once it completed)."""
    manifest = run / "manifest.json"
    record = json.loads(manifest.read_text())
    del record["trained_recipe_sha256"]
    manifest.write_text(json.dumps(record))


def test_resume_compares_with_the_recipe_the_run_started_with(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A default that changed since the run started is a changed recipe (the run's recipe.yaml
    pinned the old value); a field added since, absent from that file, is not."""
    recipe = small_recipe(workdir / "upgraded.yaml", workdir, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    started = workdir / "upgraded" / "recipe.yaml"
    original = yaml.safe_load(started.read_text())
    as_started_by_an_older_compressor(workdir / "upgraded")  # the edits below: what it pinned

    pinned_other_default = json.loads(json.dumps(original))
    pinned_other_default["train"]["optimizer"]["weight_decay"] = 1e-4
    started.write_text(yaml.safe_dump(pinned_other_default))
    refused = run_cli(capsys, "train", str(recipe), "--resume")
    assert refused.code == 2
    assert "the recipe changed since" in refused.stderr
    assert "train.optimizer.weight_decay: 0.0001 → 0.0005" in refused.stderr

    started.unlink()  # lost, not changed: "the recipe changed" would send the user to look
    lost = run_cli(capsys, "train", str(recipe), "--resume")
    assert lost.code == 2
    assert lost.stderr == (
        f"error: {recipe}: {started} is missing, so the resume cannot tell whether {recipe} is "
        "the recipe the run started with; put that file back, or start over with --overwrite\n"
    )

    before_int8 = json.loads(json.dumps(original))
    del before_int8["export"]["int8"]
    started.write_text(yaml.safe_dump(before_int8))
    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr
    assert "resuming" in resumed.stdout


def test_resume_refuses_a_run_whose_recipe_yaml_was_edited_by_hand(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its checkpoint was trained with the values as they were: resumed with a recipe that
    matches the edit, the run would finish as if trained with it, and export and the gate
    would accept it."""
    recipe = small_recipe(workdir / "edited.yaml", workdir, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    started = workdir / "edited" / "recipe.yaml"
    body = yaml.safe_load(started.read_text())
    body["train"]["optimizer"]["lr"] = 0.2
    started.write_text(yaml.safe_dump(body))
    matching = yaml.safe_load(recipe.read_text())
    matching["train"].setdefault("optimizer", {})["lr"] = 0.2
    recipe.write_text(yaml.safe_dump(matching))
    refused = run_cli(capsys, "train", str(recipe), "--resume")
    assert refused.code == 2
    assert refused.stderr == (
        f"error: {recipe}: {started} was edited since the run started (manifest.json records "
        f"another hash), so the resume cannot tell whether {recipe} is the recipe the run "
        "started with; put that file back, or start over with --overwrite\n"
    )


def test_overwrite_refuses_to_destroy_a_teacher_read_from_the_run_it_replaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The replaced run is deleted once the new one completes: a teacher read from it was
    lost, and its student.pt became the new student."""
    runs = tmp_path / "runs"
    recipe = small_recipe(tmp_path / "self.yaml", runs, epochs=1, max_steps_per_epoch=2)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    teacher = tmp_path / "runs" / "self" / "student.pt"
    before = teacher.read_bytes()
    body = yaml.safe_load(recipe.read_text())
    body.update(teacher={"arch": "resnet8", "checkpoint": str(teacher)}, method={"name": "kd"})
    recipe.write_text(yaml.safe_dump(body))
    refused = run_cli(capsys, "distill", str(recipe), "--overwrite")
    assert refused.code == 2
    assert refused.stderr == (
        f"error: {recipe}: teacher.checkpoint: {teacher} is in {runs / 'self'}, which this "
        "run --overwrite replaces; copy it out of the run directory and point the recipe there, "
        "or set output.name to start a new run\n"
    )
    assert teacher.read_bytes() == before


class SavedEpochs(RunObserver):
    """Reads the run's checkpoint as each epoch's line is shown."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self.saved: list[int] = []

    def epoch_finished(self, epoch: int, epochs: int, result: object, test: object) -> None:
        self.saved.append(torch.load(self.checkpoint, weights_only=True)["epoch"])


def test_an_epoch_is_shown_finished_only_once_its_checkpoint_is_saved(tmp_path: Path) -> None:
    """Shown before the save, a Ctrl-C right after the line came during the save: the run said
    'before the first epoch finished' with epoch 1 on the screen."""
    recipe = small_recipe(tmp_path / "r.yaml", tmp_path / "runs", epochs=2, max_steps_per_epoch=2)
    observer = SavedEpochs(tmp_path / "runs" / "r" / "checkpoints" / "last.pt")
    run_training(load_recipe(recipe), recipe, distill=False, observer=observer)
    assert observer.saved == [1, 2]


class MovesTheRun(RunObserver):
    """Renames the run folder as epoch `epoch` (from 0) finishes, as a user tidying runs/
    might."""

    def __init__(self, run: Path, epoch: int) -> None:
        self.run, self.epoch = run, epoch

    def epoch_finished(self, epoch: int, epochs: int, result: object, test: object) -> None:
        if epoch == self.epoch:
            self.run.rename(self.run.with_name("moved"))


@pytest.mark.parametrize("epoch", [0, 1])  # the next epoch's checkpoint, or the results
def test_a_run_moved_while_it_trains_stops_rather_than_make_its_folder_anew(
    tmp_path: Path, epoch: int
) -> None:
    """The next write made runs/<name> again: the run ended split in two (its last epochs and
    end in a new folder, without recipe.yaml or lock; its start in the moved one), neither
    exportable, and the command said it succeeded."""
    recipe = small_recipe(tmp_path / "r.yaml", tmp_path / "runs", epochs=2, max_steps_per_epoch=2)
    run = tmp_path / "runs" / "r"
    with pytest.raises(UserError, match="the run directory was moved or removed while the run"):
        run_training(load_recipe(recipe), recipe, distill=False, observer=MovesTheRun(run, epoch))
    assert not run.exists()
    moved = tmp_path / "runs" / "moved"
    assert len((moved / "metrics.jsonl").read_text().splitlines()) == epoch + 1
    assert not (moved / "student.pt").exists()


def _photos_run_stopped_after_epoch_1(tmp_path: Path) -> tuple[Path, Path]:
    """A run on an image folder, stopped after its first epoch: (the folder, the recipe)."""
    root = make_imagefolder(tmp_path / "photos")
    recipe = write(
        tmp_path / "photos.yaml",
        {
            "student": {"arch": "resnet8"},
            "data": {"name": "imagefolder", "root": str(root)},
            "train": {"epochs": 2, "batch_size": 2, "device": "cpu"},
            "output": {"dir": str(tmp_path / "runs")},
        },
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    return root, recipe


def test_resume_refuses_an_image_folder_whose_files_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe reads the same, but the images are not the ones the run trained on."""
    root, recipe = _photos_run_stopped_after_epoch_1(tmp_path)
    save_image(root / "train" / "dog" / "added.png")
    refused = run_cli(capsys, "train", str(recipe), "--resume")
    assert refused.code == 2
    assert refused.stderr == (
        f"error: {recipe}: the data changed since the run started (train images 4 → 5); resume "
        "with the images it started with, or start over with --overwrite\n"
    )
    (root / "train" / "dog" / "added.png").unlink()
    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr


def test_resume_refuses_an_image_folder_whose_images_moved_or_were_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same counts, same class names: an image moved from one class to the other, or
    replaced by another, used to be resumed on without a word."""
    root, recipe = _photos_run_stopped_after_epoch_1(tmp_path)
    refused = (
        f"error: {recipe}: the data changed since the run started (train images renamed, "
        "moved to another class or replaced); resume with the images it started with, or "
        "start over with --overwrite\n"
    )
    cat, dog = root / "train" / "cat" / "a.png", root / "train" / "dog" / "a.png"
    moved = root / "train" / "dog" / "from-cat.png"
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for change, undo in (
        (lambda: cat.rename(moved), lambda: moved.rename(cat)),
        (lambda: Image.fromarray(noise).save(dog), lambda: save_image(dog, value=50)),
    ):
        change()
        assert run_cli(capsys, "train", str(recipe), "--resume").stderr == refused
        undo()
    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr


def test_resume_refuses_an_image_folder_whose_class_was_renamed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same counts, other names: `cat` renamed `zebra` sorts after `dog`, and every label
    would have flipped halfway through training without a word."""
    root, recipe = _photos_run_stopped_after_epoch_1(tmp_path)
    for split in ("train", "val"):
        (root / split / "cat").rename(root / split / "zebra")
    refused = run_cli(capsys, "train", str(recipe), "--resume")
    assert refused.code == 2
    assert refused.stderr == (
        f"error: {recipe}: the data changed since the run started (class 0 'cat' is now "
        "'dog', class 1 'dog' is now 'zebra'); resume with the images it started with, or "
        "start over with --overwrite\n"
    )


def test_resume_takes_a_changed_gate_or_export_section_and_keeps_it(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """How a run is exported and gated does not change what it trains (the sections a
    finished run's recipe.yaml may change, provenance.FREE_TO_CHANGE): a resume takes them,
    and the run's recipe.yaml keeps the new values for export and the gate."""
    recipe = small_recipe(workdir / "regated.yaml", workdir, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=False, observer=Interrupt(1))
    edited = yaml.safe_load(recipe.read_text())
    edited |= {"gate": {"max_drop": 80.0}, "export": {"batch_sizes": [1, 4]}}
    recipe.write_text(yaml.safe_dump(edited))
    resumed = run_cli(capsys, "train", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr
    kept = load_recipe(workdir / "regated" / "recipe.yaml", started=True)
    assert kept.gate.max_drop == 80.0 and kept.export.batch_sizes == [1, 4]


def test_trust_given_on_resume_is_not_a_changed_recipe(
    workdir: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TorchScript teacher's run started before programs needed teacher.trust_pickle goes
    on once the recipe trusts the file."""
    teacher = create_model("resnet20", 10, 1)
    teacher.load_state_dict(torch.load(teacher_checkpoint, weights_only=True)["state_dict"])
    scripted = workdir / "teacher.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(teacher.eval()), str(scripted))
    recipe = write(
        workdir / "scripted.yaml",
        {
            "teacher": {"checkpoint": str(scripted), "trust_pickle": True},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 2, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe), recipe, distill=True, observer=Interrupt(1))
    as_started_by_an_older_compressor(workdir / "scripted")
    started = workdir / "scripted" / "recipe.yaml"
    older = yaml.safe_load(started.read_text())
    older["teacher"]["trust_pickle"] = False  # as the older compressor wrote it
    started.write_text(yaml.safe_dump(older))
    resumed = run_cli(capsys, "distill", str(recipe), "--resume")
    assert resumed.code == 0, resumed.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_run_being_trained_is_refused_to_a_second_process_and_stops_on_sigterm(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `--resume` (another terminal, a retried CI job) would train the same run
    twice over one checkpoint, and `--overwrite` would delete the live run's checkpoints.
    SIGTERM (a scheduler's timeout) then stops the live one as Ctrl-C does."""
    recipe = write(
        workdir / "busy.yaml",
        {"student": {"arch": "resnet8"}, "train": {"epochs": 500}, "output": {"dir": str(workdir)}},
    )
    run = RunDir(workdir / "busy")
    command = [sys.executable, "-m", "compressor", "train", str(recipe)]
    log = workdir / "busy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not run.checkpoint.exists():
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            for flag in ("--resume", "--overwrite"):
                refused = run_cli(capsys, "train", str(recipe), flag)
                assert refused.code == 2
                assert "another process is training this run now" in refused.stderr
                assert "reading data set" not in refused.stdout  # refused before slow work
                assert run.checkpoint.exists()
                # The refusal leaves the live run's manifest alone, however soon it came.
                assert json.loads(run.manifest.read_text())["status"] == "running"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, log.read_text()
    assert f"continue from the last finished epoch with: compress train {recipe} --resume" in (
        log.read_text()
    )
    assert json.loads(run.manifest.read_text())["status"] == "interrupted"


def test_a_run_says_what_data_it_read_and_warns_of_classes_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subset smaller than the class count leaves classes without a training image: said,
    not left to show up as a student that never predicts them; so is a batch larger than the
    split, whose epochs are one step."""
    recipe = write(
        tmp_path / "five.yaml",
        {
            "student": {"arch": "resnet8"},
            "data": {"max_train_samples": 5},
            "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
            "gate": {"min_agreement": 0.995},
            "output": {"dir": str(tmp_path)},
        },
    )
    result = run_cli(capsys, "train", str(recipe))
    assert result.code == 0, result.stderr
    assert "warning: gate.min_agreement is 0.995 %, a bar almost anything passes" in result.stderr
    assert "data digits: 5 training and 360 test images of 8x8, 10 classes" in result.stdout
    assert (
        "warning: no training image of 5 of the 10 classes (5, 6, 7, 8, 9): the student cannot "
        "learn them; data.max_train_samples 5 is fewer than the classes: raise it"
    ) in result.stderr
    assert (
        "warning: train.batch_size 8 is more than the training split's 5 images: each epoch is "
        "one step on all of them"
    ) in result.stderr


def test_resume_without_a_checkpoint_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write(workdir / "fresh.yaml", {"student": {"arch": "resnet8"}})
    result = run_cli(capsys, "train", str(recipe), "--resume")
    assert result.code == 2
    assert "no such run to resume" in result.stderr


def test_diverging_loss_stops_the_run_with_the_part_named(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write(
        workdir / "diverge.yaml",
        {
            "student": {"arch": "resnet8"},
            "train": {
                "epochs": 2,
                "batch_size": 64,
                "device": "cpu",
                "optimizer": {"name": "sgd", "lr": 1.0e30, "weight_decay": 0.0},
                "schedule": {"name": "constant"},
            },
            "output": {"dir": str(workdir)},
        },
    )
    result = run_cli(capsys, "train", str(recipe))
    assert result.code == 2
    run = workdir / "diverge"
    assert one_error_line(result) == (
        "error: the loss (its parts ce) became NaN or infinite in epoch 1 by step 10; the epoch "
        "is not checkpointed. Lower train.optimizer.lr and start again with --overwrite"
    )  # no train.amp advice: a CPU run trains in fp32
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    # Not "finish it with --resume": that would diverge again. The reason is repeated.
    said = one_error_line(run_cli(capsys, "export", str(run)))
    assert said.startswith(f"error: {run}: the run failed on its input: the loss")
    assert said.endswith("and start again with --overwrite")
    again = one_error_line(run_cli(capsys, "train", str(recipe)))
    assert again == (
        f"error: {run} already holds a run that failed on its input (the loss (its parts ce) "
        "became NaN or infinite in epoch 1 by step 10); fix that and use --overwrite, or set "
        "output.name to start a new one"
    )
    assert not (run / "checkpoints" / "last.pt").exists()
    assert not (run / "student.pt").exists()
    # Replaced by another run that diverges: a run with no checkpoint has nothing to go back
    # to, so nothing is set aside or offered.
    again = run_cli(capsys, "train", str(recipe), "--overwrite")
    assert again.code == 2
    assert not (workdir / "diverge.replaced").exists()
    assert "the run it replaced" not in again.stdout + again.stderr
    # A completed run replaced by one that diverges: kept, and the failure says where.
    sane = yaml.safe_load(recipe.read_text())
    sane["train"].update({"epochs": 1, "max_steps_per_epoch": 2})
    sane["train"]["optimizer"]["lr"] = 0.01
    recipe.write_text(yaml.safe_dump(sane))
    assert run_cli(capsys, "train", str(recipe), "--overwrite").code == 0
    sane["train"]["optimizer"]["lr"] = 1.0e30
    recipe.write_text(yaml.safe_dump(sane))
    failed = run_cli(capsys, "train", str(recipe), "--overwrite")
    assert failed.code == 2
    aside = workdir / "diverge.replaced"
    assert f"{run} failed (the run it replaced is kept in {aside}" in failed.stderr
    assert json.loads((aside / "manifest.json").read_text())["status"] == "completed"


def test_gradient_clipping_bounds_the_update(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "student": {"arch": "resnet8"},
        "train": {
            "epochs": 1,
            "batch_size": 64,
            "device": "cpu",
            "max_steps_per_epoch": 1,
            "optimizer": {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0},
            "schedule": {"name": "constant"},
            "grad_clip_norm": 1.0e-3,
        },
        "output": {"dir": str(workdir)},
    }
    recipe = write(workdir / "clipped.yaml", body)
    assert run_cli(capsys, "train", str(recipe)).code == 0
    torch.manual_seed(0)
    initial = create_model("resnet8", 10, 1).state_dict()
    final = torch.load(workdir / "clipped" / "student.pt", weights_only=True)["state_dict"]
    step = torch.cat(
        [(final[k] - initial[k]).flatten() for k in initial if initial[k].is_floating_point()]
    ).norm()
    # One SGD step of lr 1 moves the weights by the clipped gradient (plus BN running stats).
    weights = [k for k in initial if "running" not in k and initial[k].is_floating_point()]
    moved = torch.cat([(final[k] - initial[k]).flatten() for k in weights]).norm()
    assert moved <= 1.0e-3 * 1.001
    assert step > 0


def test_a_run_puts_back_the_process_wide_torch_settings(workdir: Path) -> None:
    """`train.num_threads` and `train.deterministic` are process globals: the caller's come back."""
    recipe = write(
        workdir / "settings.yaml",
        {
            "student": {"arch": "resnet8"},
            "data": {"max_train_samples": 128, "max_test_samples": 64},
            "train": {
                "epochs": 1,
                "batch_size": 64,
                "device": "cpu",
                "deterministic": True,
                "num_threads": 1,
            },
            "output": {"dir": str(workdir)},
        },
    )
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)
    try:
        seen = {}

        class Watch(RunObserver):
            def epoch_finished(self, epoch, epochs, result, test) -> None:
                seen["during"] = (
                    torch.get_num_threads(),
                    torch.are_deterministic_algorithms_enabled(),
                )

        run_training(load_recipe(recipe), recipe, distill=False, observer=Watch())
        assert seen["during"] == (1, True)
        assert torch.get_num_threads() == 2
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
