"""Pre-flight checks: problems a schema cannot see (files, architectures, class counts)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from compressor.methods.bss import attacking_epochs
from compressor.models import create_model
from compressor.preflight import setting_warnings, unused_settings
from compressor.recipe import parse_recipe
from tests.cli_helpers import run_cli
from tests.data.image_files import make_imagefolder
from tests.recipe.helpers import merged, write_recipe

BAD_SETUPS = [
    (
        "unknown student architecture",
        merged(student={"arch": "resnet21"}),
        ["student.arch", "'resnet21'", "resnet20", "torchvision"],
    ),
    (
        "student architecture mistyped",
        merged(student={"arch": "ResNet-56"}),
        ["student.arch: 'ResNet-56' is not a known architecture (did you mean resnet56"],
    ),
    (
        "unknown teacher architecture",
        merged(teacher={"arch": "resnet57", "checkpoint": "t.pt"}, method={"name": "kd"}),
        ["teacher.arch", "'resnet57' is not a known architecture (did you mean resnet5"],
    ),
    (
        "teacher without weights",
        merged(teacher={"arch": "resnet20"}, method={"name": "kd"}),
        ["teacher.checkpoint", "untrained"],
    ),
    (
        "missing teacher checkpoint",
        merged(teacher={"arch": "resnet20", "checkpoint": "missing.th"}, method={"name": "kd"}),
        ["teacher.checkpoint", "missing.th", "does not exist"],
    ),
    (
        "teacher/data class-count mismatch",
        merged(
            teacher={"arch": "resnet20", "checkpoint": "t.pt", "num_classes": 100},
            method={"name": "kd"},
        ),
        ["teacher.num_classes", "100 classes", "has 10"],
    ),
    (
        "distillation method without a teacher",
        merged(method={"name": "amkd"}),
        ["teacher", "'amkd'", "no teacher"],
    ),
    (
        "data root that does not exist",
        merged(data={"name": "cifar10", "root": "/definitely/not/here"}),
        ["data", "/definitely/not/here"],
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "expected"), BAD_SETUPS, ids=[case for case, _, _ in BAD_SETUPS]
)
def test_bad_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, data: dict, expected: list[str]
) -> None:
    path = write_recipe(tmp_path, data)
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr, (case, fragment, result.stderr)


def test_good_recipe_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, merged())))
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout


def test_distilling_without_a_teacher_points_to_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "distill", str(write_recipe(tmp_path, merged())))
    assert result.code == 2
    assert "compress train" in result.stderr


def _teacher_recipe(tmp_path: Path, teacher: dict) -> Path:
    return write_recipe(tmp_path, merged(teacher=teacher, method={"name": "kd"}))


def _weights(tmp_path: Path, arch: str) -> str:
    path = tmp_path / f"{arch}.pt"
    torch.save(create_model(arch, 10, 1).state_dict(), path)
    return str(path)


def test_validate_loads_the_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _teacher_recipe(
        tmp_path, {"arch": "resnet20", "checkpoint": _weights(tmp_path, "resnet20")}
    )
    result = run_cli(capsys, "recipe", "validate", str(good))
    assert result.code == 0, result.stderr
    assert "teacher loads" in result.stdout


def test_validate_warns_of_a_teacher_the_default_method_would_not_learn_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compress distill` warns of it at once; validate said "valid" alone."""
    weights = _weights(tmp_path, "resnet20")
    recipe = write_recipe(tmp_path, merged(teacher={"arch": "resnet20", "checkpoint": weights}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 0, result.stderr
    assert f"warning: {recipe}: method 'ce' does not learn from the teacher" in result.stderr


def test_validate_refuses_an_output_dir_the_run_cannot_be_made_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every run of it would stop at once: validate said "valid"."""
    recipe = write_recipe(tmp_path, merged(), "other.yaml")
    body = merged(output={"dir": str(recipe), "name": "x"})
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, body)))
    assert result.code == 2
    assert f"{recipe}: a file where the run directory {recipe / 'x'} needs a folder" in (
        result.stderr
    )


def test_a_teacher_run_trained_from_another_folder_is_pointed_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-step recipes read ../runs/NAME/student.pt from their folder; step 1, run from
    the recipes' folder, wrote its run under it (output.dir is read from where compress
    runs), and step 2 said only that the file does not exist."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    teacher = {"arch": "resnet20", "checkpoint": "../runs/teacher/student.pt"}
    recipe = write_recipe(recipes, merged(teacher=teacher, method={"name": "kd"}))
    trained = recipes / "runs" / "teacher" / "student.pt"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"weights")
    monkeypatch.chdir(recipes)
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2
    assert (
        f"(a run of that name is at {trained}: output.dir is read from the folder `compress` "
        f"runs in, and it was trained from another folder than the recipe's path assumes, "
        f"{tmp_path}; train it from there, or point teacher.checkpoint at that file)"
    ) in result.stderr


UNLOADABLE_TEACHERS = [
    (
        "another architecture's weights",
        lambda t: {"arch": "resnet20", "checkpoint": _weights(t, "resnet56")},
        "resnet56",
    ),
    (
        "a text file as checkpoint",
        lambda t: {"arch": "resnet20", "checkpoint": str(_text(t))},
        "cannot read this file",
    ),
    (
        "an entrypoint that does not exist",
        lambda t: {"entrypoint": "json:build_teacher"},
        "build_teacher",
    ),
]


@pytest.mark.parametrize(
    ("case", "teacher", "expected"),
    UNLOADABLE_TEACHERS,
    ids=[case for case, _, _ in UNLOADABLE_TEACHERS],
)
def test_validate_refuses_a_teacher_that_would_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, teacher, expected: str
) -> None:
    result = run_cli(
        capsys, "recipe", "validate", str(_teacher_recipe(tmp_path, teacher(tmp_path)))
    )
    assert result.code == 2, (case, result.stdout)
    assert "teacher:" in result.stderr and expected in result.stderr, (case, result.stderr)
    assert "Traceback" not in result.stderr


def test_validate_builds_the_student_and_checks_feature_widths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What training would refuse in its first seconds, validate says without the data."""
    teacher = {"arch": "resnet20", "checkpoint": _weights(tmp_path, "resnet20")}
    typo = merged(teacher=teacher, student={"arch": "mobilenetv2", "kwargs": {"width": 2}})
    features = merged(
        teacher=teacher,
        student={"arch": "mobilenetv2"},
        method={"name": "amkd", "embedding": "features"},
    )
    for recipe, expected in (
        (typo, "student: model 'mobilenetv2': got an unexpected keyword argument 'width'"),
        (
            features,
            "method.embedding: features compares penultimate features, but the "
            "teacher has 64 and the student 1280",
        ),
    ):
        result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, recipe)))
        assert result.code == 2, result.stdout
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_validate_runs_the_student_on_images_of_the_data_sets_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ViT needs 224-pixel images: known from data.image_size without decoding a file, and
    for a folder of photos without image_size from one image's header (the loader gives every
    image the first one's size, or refuses the folder)."""
    root = make_imagefolder(tmp_path / "photos")
    data = {"name": "imagefolder", "root": str(root)}
    for given, shape in (({"image_size": 32}, [2, 3, 32, 32]), ({}, [2, 3, 16, 16])):
        recipe = merged(student={"arch": "vit_b_16"}, data={**data, **given})
        result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, recipe)))
        assert result.code == 2, result.stdout
        assert f"student vit_b_16 fails on a batch of shape {shape}" in result.stderr


def test_validate_names_an_unreadable_image_it_needs_the_size_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the first image's size nothing can be run on images of it: the recipe is not
    called valid with the models unchecked; the image is named, as loading would name it."""
    root = make_imagefolder(tmp_path / "photos")
    first = root / "train" / "cat" / "a.png"
    first.write_bytes(b"not a PNG")
    recipe = write_recipe(tmp_path, merged(data={"name": "imagefolder", "root": str(root)}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.startswith(f"error: {recipe}: data: cannot decode image {first}: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    return path


def test_a_teacher_or_method_the_command_will_not_use_is_warned_about() -> None:
    teacher = {"arch": "resnet20", "checkpoint": "t.pt"}
    distillation = parse_recipe(merged(teacher=teacher, method={"name": "amkd"}))
    assert (
        "method 'amkd' and teacher are not used" in unused_settings(distillation, distill=False)[0]
    )
    scored_teacher = parse_recipe(merged(teacher=teacher))
    assert "the recipe's teacher is not used" in unused_settings(scored_teacher, distill=False)[0]
    assert unused_settings(distillation, distill=True) == []
    teacher_training = parse_recipe(merged())
    assert unused_settings(teacher_training, distill=False) == []
    no_method = parse_recipe(merged(teacher=teacher))
    assert "set method.name to kd or amkd" in unused_settings(no_method, distill=True)[0]


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        ("weights", "is a folder; point it at the weights file"),
        ("teacher.onnx", "ONNX model"),
        ("/dev/null", "'/dev/null' is not a regular file (a device or a pipe)"),
    ],
)
def test_a_teacher_checkpoint_that_is_a_folder_or_onnx_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: str, expected: str
) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "teacher.onnx").write_bytes(b"\x08\x07")
    recipe = _teacher_recipe(tmp_path, {"arch": "resnet20", "checkpoint": checkpoint})
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2
    assert "teacher.checkpoint" in result.stderr and expected in result.stderr


_BUILDERS = """
import torch


def _linear(classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))


def seven_classes():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _linear(7)


def unseeded():
    return _linear(10)


class _Pair(torch.nn.Module):
    # Logits and an auxiliary output, as some training code returns them.

    def __init__(self, classes):
        super().__init__()
        self.head = _pooled(classes)

    def forward(self, images):
        return self.head(images), None


def _pooled(classes):
    # Any image size: average the pixels of each channel, then a linear layer.
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, classes)
    )


def seven_from_photos():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _pooled(7)


def pair_from_photos(num_classes):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _Pair(num_classes)


def from_photos(num_classes):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _pooled(num_classes)
"""


@pytest.fixture
def builders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """_BUILDERS importable as `builders`, for entrypoint teachers."""
    (tmp_path / "builders.py").write_text(_BUILDERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("builders", None)


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (
            "seven_classes",
            "teacher: the teacher returns [2, 7] for a batch of 2; expected logits of shape",
        ),
        # The field names the section: no "teacher: teacher.entrypoint ...".
        (
            "unseeded",
            "teacher.entrypoint builders:unseeded: builds other weights on every call (two "
            "calls differ)",
        ),
    ],
)
def test_validate_refuses_a_teacher_distillation_would_refuse_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], builders: None, builder: str, expected: str
) -> None:
    recipe = _teacher_recipe(tmp_path, {"entrypoint": f"builders:{builder}"})
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.startswith(f"error: {recipe}: {expected}"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("builder", "got"), [("seven_from_photos", "[2, 7]"), ("pair_from_photos", "tuple")]
)
def test_validate_runs_the_teacher_on_a_folder_of_photos_without_image_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], builders: None, builder: str, got: str
) -> None:
    """`compress teacher` and `distill` refuse these teachers on the first batch; validate
    must not call the recipe valid because the folder's image size is not in the recipe."""
    root = make_imagefolder(tmp_path / "photos")
    recipe = write_recipe(
        tmp_path,
        merged(
            teacher={"entrypoint": f"builders:{builder}"},
            method={"name": "kd"},
            data={"name": "imagefolder", "root": str(root)},
        ),
    )
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: {recipe}: teacher: the teacher returns {got} for a batch of 2; expected "
        "logits of shape [2, 2] (one score per class of the data set)"
    )


def test_validate_refuses_stats_of_another_channel_count_for_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Photos are read as RGB: known without reading them, so validate says what loading
    would (and does not pass a recipe `compress teacher` refuses)."""
    data = {"name": "imagefolder", "root": str(make_imagefolder(tmp_path / "photos"))}
    recipe = write_recipe(tmp_path, merged(data={**data, "mean": [0.5], "std": [0.25]}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: {recipe}: data.mean and data.std have 1 value but imagefolder images have 3 "
        "channels; give one value per channel"
    )


def test_validate_refuses_a_crop_padding_that_can_miss_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write_recipe(tmp_path, merged(data={"name": "digits", "crop_padding": 64}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: {recipe}: data.crop_padding: 64 pads 8x8 images by their side or more, so a "
        "random crop may hold none of the image; use at most 7 (leave it out for the default, 1)"
    )


def test_validate_names_an_empty_class_folder_before_comparing_class_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty class folder is no class: a 2-class teacher is right for this data, which
    loading refuses for the folder, not for the teacher."""
    root = make_imagefolder(tmp_path / "photos")
    (root / "train" / "empty").mkdir()
    weights = tmp_path / "two.pt"
    torch.save(create_model("resnet8", 2, 3).state_dict(), weights)
    recipe = write_recipe(
        tmp_path,
        merged(
            teacher={"arch": "resnet8", "checkpoint": str(weights)},
            method={"name": "kd"},
            data={"name": "imagefolder", "root": str(root)},
        ),
    )
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: {recipe}: data: {root / 'train' / 'empty'} has no images (.jpg, .jpeg, .png, "
        ".ppm, .bmp, .pgm, .tif, .tiff, .webp)"
    )


def test_validate_tells_a_head_built_by_kwargs_from_the_data_s_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """teacher.kwargs set 100 outputs for 10-class data and a 10-class checkpoint: the
    data does not have 100 classes, the model built does."""
    torch.save(create_model("resnet8", 10, 1).state_dict(), tmp_path / "ten.pt")
    teacher = {
        "entrypoint": "compressor.models.cifar_resnet:cifar_resnet",
        "kwargs": {"depth": 8, "num_classes": 100},
        "checkpoint": str(tmp_path / "ten.pt"),
    }
    recipe = _teacher_recipe(tmp_path, teacher)
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2, result.stdout
    assert result.stderr.splitlines()[0] == (
        f"error: {recipe}: teacher: {tmp_path / 'ten.pt'}: linear.weight: checkpoint [10, 64] vs "
        "model [100, 64] — the model built has 100 outputs, the checkpoint 10; the data has 10 "
        "classes: check teacher.entrypoint and its kwargs (num_classes: 10 in kwargs, where the "
        "function takes it through **kwargs, as torchvision's do)"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_device_this_machine_lacks_is_a_warning_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe may be for the GPU box; a run here would stop on it, so validate says so."""
    recipe = write_recipe(tmp_path, merged(train={"epochs": 2, "device": "cuda"}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout
    assert result.stderr.strip() == (
        f"warning: {recipe}: train.device is 'cuda' but no CUDA GPU is visible; use 'auto' or "
        "'cpu' (here; a run on this machine would stop)"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_mixed_precision_where_auto_finds_no_gpu_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`device: auto` may find a GPU where the recipe goes; here it finds the CPU, where a
    run would stop on `amp: fp16`, so validate says so instead of calling the recipe fine."""
    recipe = write_recipe(tmp_path, merged(train={"epochs": 2, "amp": "fp16"}))
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 0, result.stderr
    assert result.stderr.strip() == (
        f"warning: {recipe}: train.amp is 'fp16' but the device is cpu; mixed precision is for "
        "CUDA: use amp: auto or off (here; a run on this machine would stop)"
    )


def test_a_percentage_written_as_a_fraction_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`min_accuracy: 0.9` is 0.9 %, which almost any teacher passes: valid, but said."""
    recipe = write_recipe(
        tmp_path,
        merged(gate={"min_agreement": 0.995}, export={"int8_min_agreement": 98.0}),
    )
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 0, result.stderr
    assert result.stderr.strip() == (
        f"warning: {recipe}: gate.min_agreement is 0.995 %, a bar almost anything passes; it is "
        "a percentage: for 99.5 % write 99.5"
    )
    teacher = {"arch": "resnet20", "checkpoint": "t.pt", "min_accuracy": 0.9}
    assert setting_warnings(parse_recipe(merged(teacher=teacher))) == [
        "teacher.min_accuracy is 0.9 %, a bar almost anything passes; it is a percentage: for "
        "90 % write 90"
    ]
    assert setting_warnings(parse_recipe(merged())) == []


def test_an_arch_beside_a_torchscript_teacher_is_warned_about(tmp_path: Path) -> None:
    """The program is the whole model: `arch: resnet56` beside a ResNet-20 program would be
    taken for the teacher's architecture by whoever reads the recipe."""
    program = tmp_path / "teacher.pt"
    with warnings.catch_warnings():  # torch.jit's deprecation, whichever kind this torch has
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), program)
    teacher = {"arch": "resnet56", "checkpoint": str(program), "trust_pickle": True}
    assert setting_warnings(parse_recipe(merged(teacher=teacher))) == [
        f"teacher.arch resnet56 is not used: {program} is a TorchScript program, which holds "
        "its own architecture"
    ]
    del teacher["arch"]
    assert setting_warnings(parse_recipe(merged(teacher=teacher))) == []


@pytest.mark.parametrize(
    ("checkpoint_channels", "data_channels", "student", "hint"),
    [
        (1, None, "resnet8", "; or set data.channels: 1 to read the image folder as grayscale"),
        (3, 1, "resnet8", "; or leave out data.channels: 1 to read the image folder as RGB"),
        (1, 1, "resnet18", "; or leave out data.channels: 1 to read the image folder as RGB"),
    ],
    ids=["grayscale teacher, RGB folder", "RGB teacher, grayscale folder", "torchvision student"],
)
def test_a_model_of_other_channels_than_the_folder_is_read_with_names_data_channels(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checkpoint_channels: int,
    data_channels: int | None,
    student: str,
    hint: str,
) -> None:
    """An image folder reads as 1 or 3 channels by data.channels: a teacher, or a student,
    built for the other count is met by that setting, which the refusal names."""
    checkpoint = tmp_path / "teacher.pt"
    torch.save(create_model("resnet8", 2, checkpoint_channels).state_dict(), checkpoint)
    root = make_imagefolder(tmp_path / "scans")
    data = {"name": "imagefolder", "root": str(root)}
    if data_channels is not None:
        data["channels"] = data_channels
    recipe = write_recipe(
        tmp_path,
        merged(
            teacher={"arch": "resnet8", "checkpoint": str(checkpoint)},
            student={"arch": student},
            data=data,
            method={"name": "kd"},
        ),
    )
    result = run_cli(capsys, "recipe", "validate", str(recipe))
    assert result.code == 2
    [line] = [line for line in result.stderr.splitlines() if "-channel images" in line]
    assert line.endswith(hint)


def test_bank_mode_that_would_reuse_almost_nothing_is_warned_about() -> None:
    """Epochs cut short draw another part of the split each (reuse found 1.8 banked samples
    per batch where the refresh made 13.8), and a window spanning every epoch that attacks
    makes the bank once: valid, but not what bank mode is for."""
    teacher = {"arch": "resnet20", "checkpoint": "t.pt"}

    def warnings_for(method: dict, **train: object) -> list[str]:
        recipe = merged(teacher=teacher, method=method, train={"batch_size": 64, **train})
        return setting_warnings(parse_recipe(recipe))

    assert warnings_for({"name": "amkd", "bank_epochs": 2}, epochs=8) == []
    assert warnings_for({"name": "amkd"}, epochs=8, max_steps_per_epoch=6) == []
    (short,) = warnings_for({"name": "bss", "bank_epochs": 2}, epochs=8, max_steps_per_epoch=6)
    assert short.startswith("method.bank_epochs 2 with train.max_steps_per_epoch: ")
    (once,) = warnings_for({"name": "amkd", "bank_epochs": 6}, epochs=8)
    assert once == (
        "method.bank_epochs 6 spans all 6 epochs that attack (weights.beta_stop_fraction 0.75 "
        "of 8): the bank is made in epoch 1 and never refreshed; a smaller bank_epochs "
        "refreshes it"
    )
    assert warnings_for({"name": "amkd", "bank_epochs": 5}, epochs=8) == []
    # beta is 0 from a quarter of 4 epochs on: epoch 1 alone attacks, no epoch reuses.
    early = {"name": "bss", "bank_epochs": 2, "weights": {"beta_stop_fraction": 0.25}}
    assert warnings_for(early, epochs=4, max_steps_per_epoch=3) == [
        "method.bank_epochs 2: only epoch 1 attacks (weights.beta_stop_fraction 0.25 of 4), so "
        "the bank is made and never reused; remove bank_epochs"
    ]


@pytest.mark.parametrize(
    ("fraction", "epochs", "attacking"), [(0.75, 8, 6), (0.75, 2, 2), (0.25, 4, 1), (1.0, 3, 3)]
)
def test_the_epochs_that_attack_are_those_beta_is_above_zero_in(
    fraction: float, epochs: int, attacking: int
) -> None:
    """beta(e) > 0 while e < f E: epoch k (e from k - 1 to k) attacks while k - 1 < f E."""
    assert attacking_epochs(fraction, epochs) == attacking
