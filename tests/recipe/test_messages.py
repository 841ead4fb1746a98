"""Recipe validation: every bad recipe ends in one readable line per problem and exit 2."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from compressor.errors import UserError
from compressor.recipe import parse_recipe
from tests.cli_helpers import run_cli
from tests.recipe.helpers import merged, write_recipe

BAD_RECIPES = [
    (
        "a key YAML reads as null",
        {**merged(), None: 1},
        ["(top level): a key that is empty (null), not a name; quote it if it is meant as text"],
    ),
    (
        "a key YAML reads as a number",  # was "student[1]": read as a list's item
        merged(student={"arch": "resnet8", 1: 2}),
        ["student: key 1 is a number, not a name"],
    ),
    ("unknown top-level key", merged(trainer={"epochs": 1}), ["trainer", "unknown key"]),
    (
        "typo in a nested key",
        merged(train={"optimizer": {"momentm": 0.9}}),
        ["train.optimizer.momentm", "unknown key", "momentum"],
    ),
    ("wrong type", merged(train={"epochs": "ten"}), ["train.epochs", "'ten'", "integer"]),
    ("out of range", merged(train={"batch_size": 1}), ["train.batch_size", "greater than"]),
    ("negative lr", merged(train={"optimizer": {"lr": -0.1}}), ["train.optimizer.lr", "-0.1"]),
    ("nan lr", merged(train={"optimizer": {"lr": float("nan")}}), ["train.optimizer.lr", "nan"]),
    (
        "infinite weight without a bound",
        merged(method={"name": "kd", "temperature": float("inf")}, teacher={"arch": "resnet20"}),
        ["method.temperature", "finite number"],
    ),
    (
        "channels for a data set with its own",
        merged(data={"name": "digits", "channels": 1}),
        ["data: channels is for image folders; digits images have their own channel count"],
    ),
    ("channels neither 1 nor 3", merged(data={"name": "imagefolder", "channels": 2}), ["1 or 3"]),
    (
        "infinite gate threshold",
        merged(gate={"max_drop": float("inf")}),
        ["gate.max_drop", "finite number"],
    ),
    ("unknown method", merged(method={"name": "dkd"}), ["method", "'dkd'", "amkd"]),
    (
        "unquoted off for a word",
        merged(train={"amp": False}),
        ["train.amp: Input should be", "(got false; YAML reads an unquoted on/off/yes/no"],
    ),
    (
        "unquoted no for a name",
        merged(output={"name": False}),
        ["output.name: Input should be a valid string", "(got false; YAML reads an unquoted"],
    ),
    (
        "unquoted number for a name",
        merged(output={"name": 2024}),
        ["output.name: Input should be a valid string (got 2024; quote it: '2024')"],
    ),
    (
        "a whole number past 64 bits",
        merged(train={"batch_size": 1e19}),
        ["train.batch_size: too large a whole number (got 1e+19)"],
    ),
    (
        "unquoted date for a name",
        merged(output={"name": datetime.date(2024, 1, 31)}),
        ["output.name: Input should be a valid string (got 2024-01-31; quote it: '2024-01-31')"],
    ),
    (
        "one number for a per-channel list",
        merged(data={"mean": 0.5, "std": [0.2]}),
        ["data.mean: Input should be a list (got 0.5)"],
    ),
    (
        "class count in student kwargs",
        merged(student={"arch": "resnet8", "kwargs": {"num_classes": 5}}),
        ["student", "kwargs may not set num_classes", "data set's class and channel counts"],
    ),
    (
        "class count in zoo teacher kwargs",
        merged(teacher={"arch": "resnet20", "kwargs": {"num_classes": 100}}),
        ["teacher", "kwargs may not set num_classes"],
    ),
    (
        "channel count in zoo teacher kwargs",
        merged(teacher={"arch": "resnet20", "kwargs": {"in_channels": 1}}),
        ["teacher", "kwargs may not set in_channels"],
    ),
    (
        "option of another method",
        merged(method={"name": "kd", "margin": 1.0}, teacher={"arch": "resnet20"}),
        ["method.margin", "unknown key", "temperature"],
    ),
    (
        "bank of zero epochs",
        merged(method={"name": "amkd", "bank_epochs": 0}, teacher={"arch": "resnet20"}),
        ["method.bank_epochs", "greater than or equal to 1", "(got 0)"],
    ),
    (
        "bad AMKD choice",
        merged(method={"name": "amkd", "embedding": "pixels"}, teacher={"arch": "resnet20"}),
        ["method.embedding", "'logits'", "'pixels'"],
    ),
    ("missing student", {"data": {"name": "digits"}}, ["student", "missing"]),
    ("unknown data set", merged(data={"name": "mnist"}), ["data.name", "'mnist'", "cifar10"]),
    ("mean without std", merged(data={"mean": [0.5]}), ["data", "both mean and std"]),
    (
        "statistics on the 0-255 scale",
        merged(data={"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}),
        [
            "data.mean: 125.3 is on the 0–255 scale; give values on the 0–1 scale (divide by 255)",
            "data.std: 63 is on the 0–255 scale; give values on the 0–1 scale (divide by 255)",
        ],
    ),
    ("bad device", merged(train={"device": "gpu"}), ["train.device", "'gpu'"]),
    ("bad amp", merged(train={"amp": "int8"}), ["train.amp", "'int8'", "bf16"]),
    (
        "milestone past the end",
        merged(train={"epochs": 5, "schedule": {"name": "multistep", "milestones": [3, 9]}}),
        ["train", "milestones", "< epochs (5)"],
    ),
    (
        "milestone at the end, which never applies",
        merged(train={"epochs": 5, "schedule": {"name": "multistep", "milestones": [3, 5]}}),
        ["train", "< epochs (5)", "never applies"],
    ),
    (
        "multistep without milestones",
        merged(train={"schedule": {"name": "multistep"}}),
        ["train.schedule", "multistep needs milestones"],
    ),
    (
        "milestones on a cosine schedule",
        merged(train={"schedule": {"name": "cosine", "milestones": [3]}}),
        ["train.schedule", "a cosine schedule would ignore them"],
    ),
    (
        "gamma on a constant schedule",
        merged(train={"schedule": {"name": "constant", "gamma": 0.5}}),
        ["train.schedule", "a constant schedule would ignore them"],
    ),
    (
        "warm-up as long as a one-epoch run",
        merged(train={"epochs": 1, "schedule": {"warmup_epochs": 1}}),
        ["train", "warmup_epochs must be smaller than epochs (1)"],
    ),
    (
        "mixed precision on the cpu",
        merged(train={"device": "cpu", "amp": "bf16"}),
        ["train", "amp 'bf16' is mixed precision on CUDA, but device is 'cpu'"],
    ),
    (
        "a data root with a name no file system holds",
        merged(data={"name": "imagefolder", "root": f"/data/{'d' * 300}"}),
        ["data.root", "a file or folder name in the path", "is 300 bytes long", "…"],
    ),
    (
        "an output dir with a name no file system holds",
        merged(output={"dir": f"runs/{'d' * 256}"}),
        ["output.dir", "is 256 bytes long; a name holds at most 255"],
    ),
    (
        "a run name too long to set aside",
        merged(output={"name": "r" * 247}),
        ["output.name: is 247 bytes long", "keep it to 246"],
    ),
    (
        "reduce_range in quotes",
        merged(export={"int8": {"reduce_range": "true"}}),
        ["export.int8.reduce_range: write true, false or auto (got 'true')"],
    ),
    (
        "reduce_range as a number",
        merged(export={"int8": {"reduce_range": 1}}),
        ["export.int8.reduce_range: write true, false or auto (got 1)"],
    ),
    (
        "a run name that is a Windows device",
        merged(output={"name": "con.v2"}),
        ["output.name: cannot name a folder on Windows (a device name such as CON or NUL"],
    ),
    (
        "a run name that ends in a dot, which Windows drops",
        merged(output={"name": "run."}),
        ["output.name: cannot name a folder on Windows", "trailing '.'"],
    ),
    (
        "an lr float32 cannot hold",
        merged(train={"optimizer": {"lr": 1e39}}),
        ["train.optimizer.lr: beyond float32's largest value (3.403e+38)", "(got 1e+39)"],
    ),
    (
        "a temperature whose square float64 cannot hold",
        merged(method={"name": "kd", "temperature": 1e300}),
        ["method.temperature: beyond float32's largest value", "(got 1e+300)"],
    ),
    (
        "a std that overflows normalised pixels",
        merged(data={"mean": [0.5], "std": [1e-50]}),
        ["data: std 1e-50 is below 1e-06, less spread than any data set's"],
    ),
    (
        "kd without a loss",
        merged(method={"name": "kd", "ce_weight": 0, "kd_weight": 0}),
        ["method: ce_weight and kd_weight are both 0: the loss would be 0"],
    ),
    (
        "a milestone inside the warm-up",
        merged(
            train={
                "epochs": 4,
                "schedule": {"name": "multistep", "milestones": [1, 3], "warmup_epochs": 2},
            }
        ),
        ["train.schedule", "milestone 1 falls inside the warm-up (2 epochs)"],
    ),
    (
        "gradient-attack settings with the interpolation search",
        merged(method={"name": "bss", "attack": {"search": "interpolation", "max_steps": 50}}),
        [
            "method.attack: search 'interpolation' does not use max_steps (settings of the "
            "gradient and refined searches)"
        ],
    ),
    (
        "halvings with the gradient search",
        merged(method={"name": "amkd", "attack": {"halvings": 20}}),
        ["search 'gradient' does not use halvings (settings of the refined and interpolation"],
    ),
    (
        "amkd without a boundary term",
        merged(method={"name": "amkd", "lambda_bss": 0, "gamma": 0}),
        ["method: lambda_bss and gamma are both 0"],
    ),
    (
        "adamw with momentum",
        merged(train={"optimizer": {"name": "adamw", "momentum": 0.5}}),
        ["train.optimizer", "adamw takes no momentum or nesterov"],
    ),
    (
        "adamw with nesterov",
        merged(train={"optimizer": {"name": "adamw", "nesterov": True}}),
        ["train.optimizer", "adamw takes no momentum or nesterov"],
    ),
    (
        "nesterov without momentum",
        merged(train={"optimizer": {"momentum": 0, "nesterov": True}}),
        ["train.optimizer", "nesterov needs momentum > 0"],
    ),
    (
        "digits with a root",
        merged(data={"name": "digits", "root": "/data/cifar"}),
        ["data", "digits is embedded and reads no files, so root is not used"],
    ),
    (
        "download of an image folder",
        merged(data={"name": "imagefolder", "root": "/data/imgs", "download": True}),
        ["data", "only cifar10 and cifar100 can be downloaded, not imagefolder"],
    ),
    (
        "teacher with arch and entrypoint",
        merged(teacher={"arch": "resnet20", "entrypoint": "pkg.mod:build"}),
        ["teacher", "either arch or entrypoint"],
    ),
    (
        "malformed entrypoint",
        merged(teacher={"entrypoint": "pkg.mod.build"}),
        ["teacher.entrypoint", "pkg.mod.build"],
    ),
    (
        "unset environment variable",
        merged(data={"name": "cifar10", "root": "${SURELY_UNSET_VAR_123}/x"}),
        ["data.root", "SURELY_UNSET_VAR_123", "not set"],
    ),
    (
        "min_accuracy as a fraction above 100",
        merged(teacher={"arch": "resnet20", "min_accuracy": 900}),
        ["teacher.min_accuracy", "less than or equal to 100"],
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "expected"), BAD_RECIPES, ids=[case for case, _, _ in BAD_RECIPES]
)
def test_bad_recipe_schema_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, data: dict, expected: list[str]
) -> None:
    path = write_recipe(tmp_path, data)
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: {path}: "), first
    for fragment in expected:
        assert fragment in result.stderr, (case, fragment, result.stderr)


def test_several_problems_are_reported_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_recipe(tmp_path, merged(train={"epochs": 0, "batch_size": 0, "amp": "x"}))
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert {line.split(": ")[2] for line in lines} == {
        "train.epochs",
        "train.batch_size",
        "train.amp",
    }


def test_a_run_name_the_file_system_encoding_cannot_hold_is_refused_by_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a C locale without UTF-8 mode, validate said "valid" and the run crashed making
    its folder (UnicodeEncodeError, exit 3)."""
    monkeypatch.setattr("sys.getfilesystemencoding", lambda: "ascii")
    path = write_recipe(tmp_path, merged(output={"name": "résumé"}))
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2, result
    assert (
        "output.name: cannot name a folder in this system's file-name encoding (ascii); use "
        "ASCII letters and digits, or run Python in UTF-8 mode (PYTHONUTF8=1)"
    ) in result.stderr


def test_a_started_run_keeps_a_name_checks_added_since_refuse() -> None:
    """A run named `aux` before the Windows check must still resume, export and gate."""
    data = merged(output={"name": "aux"})
    with pytest.raises(UserError, match="cannot name a folder on Windows"):
        parse_recipe(data)
    assert parse_recipe(data, started=True).output.name == "aux"
