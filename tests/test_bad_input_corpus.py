"""The bad-input corpus: every case a user can get wrong ends in exit code 2 and one clear line
on stderr — never a traceback, never a run directory that looks complete.

Each case builds its bad input for real (truncated files, pickles that carry code, broken
images, unwritable paths) and runs the real `compress` entry point.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from compressor.models import create_model
from tests.cli_helpers import run_cli

MARKER = "compressor-corpus-pwned"


@dataclass
class Case:
    name: str
    build: Callable[[Path], list[str]]  # makes the files, returns the CLI arguments
    expected: tuple[str, ...]  # fragments the error must contain
    lines: int = 1  # a key-by-key checkpoint report gives one line per kind of mismatch


def recipe(tmp: Path, body: dict, name: str = "recipe.yaml") -> Path:
    body = {"output": {"dir": str(tmp / "runs")}, **body}
    path = tmp / name
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def distill(tmp: Path, teacher: dict, **sections: object) -> list[str]:
    body = {
        "teacher": teacher,
        "student": {"arch": "resnet8"},
        "method": {"name": "kd"},
        "train": {"epochs": 1, "device": "cpu"},
        **sections,
    }
    return ["distill", str(recipe(tmp, body))]


def train(tmp: Path, **sections: object) -> list[str]:
    body = {"student": {"arch": "resnet8"}, "train": {"epochs": 1, "device": "cpu"}, **sections}
    return ["train", str(recipe(tmp, body))]


def state_dict_file(tmp: Path, arch: str, classes: int = 10, channels: int = 1) -> Path:
    path = tmp / f"{arch}-{classes}.pt"
    torch.save({"state_dict": create_model(arch, classes, channels).state_dict()}, path)
    return path


class CarriesCode:
    """Unpickling this runs a shell command: exactly what weights_only loading must refuse."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {MARKER}",))


class SevenScores(torch.nn.Module):
    """A teacher for another task: seven scores per image, whatever the data set's classes."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :7]


def scripted_seven_class_teacher(tmp: Path) -> Path:
    path = tmp / "seven.ts"
    with warnings.catch_warnings():  # users still hold TorchScript teachers, deprecated or not
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(SevenScores()), str(path))
    return path


def code_pickle(tmp: Path) -> Path:
    path = tmp / "evil.pt"
    torch.save({"state_dict": {}, "payload": CarriesCode()}, path)
    return path


def truncated(tmp: Path) -> Path:
    good = state_dict_file(tmp, "resnet20")
    path = tmp / "truncated.pt"
    path.write_bytes(good.read_bytes()[:5000])
    return path


def random_bytes(tmp: Path, name: str = "noise.pt") -> Path:
    path = tmp / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def image_tree(tmp: Path, sizes: dict[str, list[tuple[int, int]]], split: str = "val") -> Path:
    root = tmp / "images"
    for part in ("train", split):
        for label, shapes in sizes.items():
            folder = root / part / label
            folder.mkdir(parents=True, exist_ok=True)
            for i, (w, h) in enumerate(shapes):
                Image.new("RGB", (w, h), (i * 40 % 255, 90, 30)).save(folder / f"{i}.png")
    return root


def cifar_with_truncated_batch(tmp: Path) -> Path:
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    batch = {b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [str(i).encode() for i in range(10)]}, protocol=2)
    )
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    return tmp


def existing_run(tmp: Path, *extra: str) -> list[str]:
    args = train(tmp)
    (tmp / "runs" / "recipe").mkdir(parents=True)
    (tmp / "runs" / "recipe" / "manifest.json").write_text("{}")
    return [*args, *extra]


def changed_recipe_resume(tmp: Path) -> list[str]:
    args = train(tmp)
    assert run_cli_plain(args) == 0
    recipe(tmp, {"student": {"arch": "resnet8"}, "train": {"epochs": 2, "device": "cpu"}})
    return [*args, "--resume"]


def run_cli_plain(args: list[str]) -> int:
    import sys

    from compressor.entry import main

    argv, sys.argv = sys.argv, ["compress", *args]
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv
    return 0


CASES = [
    # Recipes.
    Case("unknown key", lambda t: train(t, trian={}), ("trian", "unknown key")),
    Case("wrong type", lambda t: train(t, train={"epochs": "many"}), ("train.epochs", "'many'")),
    Case("out of range", lambda t: train(t, train={"batch_size": 0}), ("train.batch_size",)),
    Case("unknown method", lambda t: train(t, method={"name": "fitnet"}), ("'fitnet'",)),
    Case(
        "a seed past torch's range",
        lambda t: train(t, train={"seed": 10**23}),
        ("train.seed: Input should be less than or equal to 4294967295",),
    ),
    Case(
        "a thread count past a C int",
        lambda t: train(t, train={"num_threads": 10**11}),
        ("train.num_threads: Input should be less than or equal to 4096",),
    ),
    Case(
        "invalid YAML",
        lambda t: ["train", str(_write(t / "r.yaml", "student: [resnet8\n"))],
        ("not valid YAML",),
    ),
    Case(
        "a section given twice",
        lambda t: [
            "train",
            str(_write(t / "r.yaml", "student: {arch: resnet8}\ntrain: {epochs: 1}\ntrain: {}\n")),
        ],
        ("line 3, column 1", "'train' is given twice"),
    ),
    Case(
        "true for a number",
        lambda t: train(t, train={"epochs": True}),
        ("train.epochs: Input should be a valid integer (got true)",),
    ),
    Case(
        "control characters in the recipe",
        lambda t: ["train", str(_write_bytes(t / "r.yaml", b"\x00\x01student"))],
        ("r.yaml: line 1, column 1: not valid YAML: a control character (U+0000)",),
    ),
    Case(
        "a section that is a number",
        lambda t: train(t, train=5),
        ("train: expected a section of keys, not a number",),
    ),
    Case(
        "a recipe that is one number",
        lambda t: ["train", str(_write(t / "r.yaml", "42\n"))],
        ("mapping of sections", "not a number"),
    ),
    Case(
        "binary recipe",
        lambda t: ["train", str(_write_bytes(t / "r.yaml", b"\xff\xfe\x00\x81" * 10))],
        ("not",),
    ),
    Case("recipe is a folder", lambda t: ["train", str(t)], ("is a folder, not a recipe file",)),
    Case(
        "schema written onto a folder",
        lambda t: ["recipe", "schema", "--output", str(t)],
        ("is a folder; give a file name, such as recipe.schema.json",),
    ),
    Case(
        "schema written onto a socket",
        lambda t: ["recipe", "schema", "-o", str(_socket_file(t / "s"))],
        ("s: not a regular file (a device, pipe or socket)", "recipe.schema.json"),
    ),
    Case(
        "schema written onto an empty name",
        lambda t: ["recipe", "schema", "-o", ""],
        ("--output '.': is a folder; give a file name",),
    ),
    Case(
        "schema written onto a recipe",
        lambda t: [
            "recipe",
            "schema",
            "-o",
            str(_write(t / "r.yaml", "student: {arch: resnet8}\n")),
        ],
        ("r.yaml: exists and is not a recipe schema written by compress", "recipe.schema.json"),
    ),
    Case(
        "run name is the output folder's parent",
        lambda t: train(t, output={"dir": str(t / "runs"), "name": ".."}),
        ("output.name", "not a folder of its own"),
    ),
    Case(
        "run named after a recipe file '..yaml'",
        lambda t: ["train", str(recipe(t, {"student": {"arch": "resnet8"}}, name="..yaml"))],
        ("..yaml: the run would be named '.' after the file", "set output.name"),
    ),
    Case(
        "run named after a recipe file '...yaml', with --overwrite",
        lambda t: [
            "train",
            str(recipe(t, {"student": {"arch": "resnet8"}}, name="...yaml")),
            "--overwrite",
        ],
        ("...yaml: the run would be named '..' after the file", "or rename the file"),
    ),
    Case(
        "run named after a recipe file 'con.yaml', a Windows device",
        lambda t: [
            "recipe",
            "validate",
            str(recipe(t, {"student": {"arch": "resnet8"}}, "con.yaml")),
        ],
        (
            "con.yaml: the run would be named 'con' after the file, which cannot name a folder on "
            "Windows",
            "set output.name",
        ),
    ),
    Case(
        "run named after a recipe file 'run..yaml', ending in a dot",
        lambda t: ["train", str(recipe(t, {"student": {"arch": "resnet8"}}, name="run..yaml"))],
        ("the run would be named 'run.' after the file", "trailing '.'"),
    ),
    Case(
        "recipe nested too deeply for the YAML reader",
        lambda t: [
            "recipe",
            "validate",
            str(_write(t / "deep.yaml", f"student: {{kwargs: {{a: {'[' * 900}{']' * 900}}}}}\n")),
        ],
        ("deep.yaml: nested too deeply to be a recipe",),
    ),
    Case(
        "kwargs nested too deeply for the run's recipe hash",
        lambda t: train(t, student={"arch": "resnet8", "kwargs": {"a": _nested(300)}}),
        ("student.kwargs: a[0][0]", "nested more than 32 levels deep"),
    ),
    Case(
        "recipe that is not a regular file",
        lambda t: ["recipe", "validate", "/dev/null"],
        ("/dev/null: not a regular file",),
    ),
    Case(
        "run name too long for a folder once set aside",
        lambda t: train(t, output={"dir": str(t / "runs"), "name": "r" * 250}),
        ("output.name: is 250 bytes long", "keep it to 246"),
    ),
    Case(
        "run named after a recipe file too long for a folder once set aside",
        lambda t: [
            "train",
            str(recipe(t, {"student": {"arch": "resnet8"}}, name=f"{'r' * 250}.yaml")),
        ],
        ("the run name is 250 bytes long", "keep it to 246"),
    ),
    Case(
        "a training split of one image",
        lambda t: train(
            t,
            student={"arch": "mobilenetv2"},
            data={"name": "digits", "max_train_samples": 1},
            train={"epochs": 1, "batch_size": 4, "device": "cpu"},
        ),
        ("the training split has 1 image; training needs at least 2",),
    ),
    Case(
        "device typo",
        lambda t: train(t, train={"device": "gpu0"}),
        ("train.device", "cuda:N", "'gpu0'"),
    ),
    # torch crashes on a leading 0 and wraps 128 round to -128.
    Case(
        "device index with a leading 0",
        lambda t: train(t, train={"device": "cuda:01"}),
        ("train.device", "cuda:N (N a GPU index, 0 to 99)", "'cuda:01'"),
    ),
    Case(
        "device index past torch's",
        lambda t: train(t, train={"device": "cuda:128"}),
        ("train.device", "cuda:N", "'cuda:128'"),
    ),
    Case(
        "entrypoint without a function",
        lambda t: distill(t, {"entrypoint": "my_models"}),
        ("teacher.entrypoint", "'module:function'"),
    ),
    Case(
        "bad student kwargs",
        lambda t: train(t, student={"arch": "mobilenetv2", "kwargs": {"widht": 2}}),
        ("mobilenetv2", "widht"),
    ),
    Case(
        "unknown student",
        lambda t: train(t, student={"arch": "resnet9000"}),
        ("student.arch", "resnet9000"),
    ),
    # Checkpoints.
    Case(
        "checkpoint of another architecture",
        lambda t: distill(
            t, {"arch": "resnet56", "checkpoint": str(state_dict_file(t, "resnet20"))}
        ),
        ("missing", "the checkpoint fits resnet20"),
        lines=2,
    ),
    Case(
        "checkpoint with another class count",
        lambda t: distill(
            t, {"arch": "resnet20", "checkpoint": str(state_dict_file(t, "resnet20", classes=100))}
        ),
        ("trained for 100 classes, the data has 10",),
        lines=2,
    ),
    Case(
        "pickle that carries code",
        lambda t: distill(t, {"arch": "resnet20", "checkpoint": str(code_pickle(t))}),
        ("trust_pickle",),
    ),
    Case(
        "truncated checkpoint",
        lambda t: distill(t, {"arch": "resnet20", "checkpoint": str(truncated(t))}),
        ("truncated.pt",),
    ),
    Case(
        "random bytes as checkpoint",
        lambda t: distill(t, {"arch": "resnet20", "checkpoint": str(random_bytes(t))}),
        ("noise.pt",),
    ),
    Case(
        "empty checkpoint file",
        lambda t: distill(t, {"arch": "resnet20", "checkpoint": str(_write(t / "e.pt", ""))}),
        ("e.pt",),
    ),
    Case(
        "state dict declared as TorchScript",
        lambda t: distill(
            t,
            {
                "checkpoint": str(state_dict_file(t, "resnet20")),
                "format": "torchscript",
                "trust_pickle": True,
            },
        ),
        ("cannot load as TorchScript",),
    ),
    Case(
        "TorchScript teacher not trusted",
        lambda t: distill(t, {"checkpoint": str(scripted_seven_class_teacher(t))}),
        ("seven.ts: loading a TorchScript program runs code", "teacher.trust_pickle: true"),
    ),
    Case(
        "TorchScript teacher with another class count",
        lambda t: distill(
            t, {"checkpoint": str(scripted_seven_class_teacher(t)), "trust_pickle": True}
        ),
        ("the teacher returns [2, 7]", "expected logits of shape [2, 10]"),
    ),
    Case(
        "missing entrypoint module",
        lambda t: distill(t, {"entrypoint": "no_such_module_xyz:build"}),
        ("no_such_module_xyz",),
    ),
    Case(
        "missing teacher file",
        lambda t: distill(t, {"arch": "resnet20", "checkpoint": str(t / "nope.pt")}),
        ("nope.pt", "does not exist"),
    ),
    Case(
        "teacher below min_accuracy",
        lambda t: distill(
            t,
            {
                "arch": "resnet20",
                "checkpoint": str(state_dict_file(t, "resnet20")),
                "min_accuracy": 90,
            },
        ),
        ("below teacher.min_accuracy", "check teacher.arch resnet20 and teacher.checkpoint"),
    ),
    Case(
        "teacher below min_accuracy on resized images",
        lambda t: distill(
            t,
            {
                "arch": "resnet20",
                "checkpoint": str(state_dict_file(t, "resnet20")),
                "min_accuracy": 90,
            },
            data={"name": "digits", "image_size": 16},
        ),
        ("below teacher.min_accuracy", "data.mean/std and data.image_size match the teacher's"),
    ),
    Case(
        "entrypoint teacher below min_accuracy",
        lambda t: distill(
            t,
            {
                "entrypoint": "compressor.models.cifar_resnet:cifar_resnet",
                "kwargs": {"depth": 8},
                "checkpoint": str(state_dict_file(t, "resnet8")),
                "min_accuracy": 90,
            },
        ),
        (
            "below teacher.min_accuracy",
            "check teacher.entrypoint compressor.models.cifar_resnet:cifar_resnet and "
            "teacher.checkpoint,",
        ),
    ),
    # Data.
    Case(
        "images of different sizes",
        lambda t: train(
            t,
            data={
                "name": "imagefolder",
                "root": str(image_tree(t, {"a": [(8, 8), (9, 7)], "b": [(8, 8)]})),
            },
        ),
        ("image_size",),
    ),
    Case(
        "one-class data set",
        lambda t: train(
            t, data={"name": "imagefolder", "root": str(image_tree(t, {"a": [(8, 8), (8, 8)]}))}
        ),
        ("class",),
    ),
    Case(
        "empty data set",
        lambda t: train(t, data={"name": "imagefolder", "root": str(_mkdirs(t / "d" / "train"))}),
        ("d",),
    ),
    Case(
        "broken image file",
        lambda t: train(t, data={"name": "imagefolder", "root": str(broken_image_tree(t))}),
        ("broken.png",),
    ),
    Case(
        "truncated CIFAR batch",
        lambda t: train(t, data={"name": "cifar10", "root": str(cifar_with_truncated_batch(t))}),
        ("data_batch_3",),
    ),
    Case(
        "missing data root",
        lambda t: train(t, data={"name": "cifar10", "root": str(t / "nowhere")}),
        ("nowhere",),
    ),
    # Output and flags.
    Case(
        "output dir under a file",
        lambda t: train(t, output={"dir": str(_write(t / "file", "x") / "runs")}),
        ("file: a file where the run directory", "move it away or choose another output.dir"),
    ),
    Case(
        "resume and overwrite together",
        lambda t: [*train(t), "--resume", "--overwrite"],
        ("--resume", "--overwrite"),
    ),
    Case("resume without a run", lambda t: [*train(t), "--resume"], ("no such run to resume",)),
    Case(
        "existing run",
        lambda t: existing_run(t),
        ("holds a run stopped before its first checkpoint",),
    ),
    Case("resume with a changed recipe", changed_recipe_resume, ("recipe changed",)),
    Case(
        "mixed precision on the CPU",
        lambda t: train(t, train={"device": "cpu", "amp": "fp16"}),
        ("train.amp",),
    ),
    Case(
        "ONNX file that is not ONNX",
        lambda t: [
            "export",
            trained_run(t),
            "--student-onnx",
            str(random_bytes(t, "model.onnx")),
        ],
        ("model.onnx",),
    ),
    Case("export of a missing run", lambda t: ["export", str(t / "runs" / "nope")], ("nope",)),
    Case(
        "export of a stopped run",
        lambda t: ["export", stopped_run(t)],
        ("the run was interrupted, not completed", "`compress train /", "recipe.yaml --resume`"),
    ),
    Case(
        "student.pt replaced by a pickle that runs code",
        lambda t: ["export", replaced_student(t)],
        # Refused by its hash before anything of it is unpickled.
        ("student.pt: not the student this run trained", "recipe.yaml --resume` (it writes"),
    ),
    Case(
        "export batch size listed twice",
        lambda t: ["export", trained_run(t), "--batch-sizes", "64,1,64"],
        ("--batch-sizes: lists 64 more than once",),
    ),
    Case(
        "export batch sizes with an empty item",
        lambda t: ["export", trained_run(t), "--batch-sizes", "1,,64"],
        ("--batch-sizes '1,,64': give whole numbers separated by commas",),
    ),
    Case(
        "calibration images without --int8",
        lambda t: ["export", trained_run(t), "--calibration-images", "64"],
        ("--calibration-images: applies to --int8 only",),
    ),
    Case(
        "export batch size beyond memory",
        lambda t: ["export", trained_run(t), "--batch-sizes", "1000000000000", "--no-teacher"],
        ("--batch-sizes 1000000000000", "smaller batch sizes"),
    ),
    Case(
        "export batch size beyond numpy's index range",
        lambda t: ["export", trained_run(t), "--batch-sizes", "1,100000000000000000000"],
        ("--batch-sizes 100000000000000000000", "smaller batch sizes"),
    ),
    Case(
        "zero timed runs",
        lambda t: ["export", trained_run(t), "--runs", "0"],
        ("--runs: Input should be greater than or equal to 1",),
    ),
    Case(
        "ONNX file that is JSON",
        lambda t: ["export", trained_run(t), "--student-onnx", str(_write(t / "x.json", "{}"))],
        ("x.json: not an ONNX model",),
    ),
    Case(
        "ONNX file that is a folder",
        lambda t: ["export", trained_run(t), "--student-onnx", str(_mkdirs(t / "d" / "e"))],
        ("is a folder, not an ONNX file",),
    ),
    Case(
        "ONNX file with a fixed batch size",
        lambda t: ["export", trained_run(t), "--student-onnx", str(fixed_batch_onnx(t))],
        ("batch dimension is fixed at 1", "dynamic batch axis"),
    ),
    Case("unknown command", lambda t: ["squeeze", "x"], ("No such command",)),
]


def trained_run(tmp: Path) -> str:
    """A real, finished run to point the exporter at."""
    assert (
        run_cli_plain(train(tmp, train={"epochs": 1, "device": "cpu", "max_steps_per_epoch": 2}))
        == 0
    )
    return str(tmp / "runs" / "recipe")


def stopped_run(tmp: Path) -> str:
    """A finished run whose manifest says it was interrupted (as after an --overwrite that
    was stopped: the old student.pt is still there)."""
    run = Path(trained_run(tmp))
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    return str(run)


def replaced_student(tmp: Path) -> str:
    run = trained_run(tmp)
    torch.save({"state_dict": {}, "payload": CarriesCode()}, Path(run) / "student.pt")
    return run


def fixed_batch_onnx(tmp: Path) -> Path:
    """A valid ResNet-8 for the digits whose input is fixed at batch 1."""
    path = tmp / "fixed.onnx"
    model = create_model("resnet8", 10, 1).eval()
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=True)
    return path


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _socket_file(path: Path) -> Path:
    """A UNIX socket's file, left behind once the socket is closed: not a regular file."""
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(path))
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdirs(path: Path) -> Path:
    path.mkdir(parents=True)
    return path.parent


def broken_image_tree(tmp: Path) -> Path:
    root = image_tree(tmp, {"a": [(8, 8)], "b": [(8, 8)]})
    (root / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_ends_in_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = case.build(tmp_path)
    before = finished_results(tmp_path)
    capsys.readouterr()
    result = run_cli(capsys, *args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    # Warnings said before the refusal share stderr with it; the refusal is what is counted.
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith("warning: ")
    ]
    if case.name != "unknown command":  # click frames its usage errors in a box
        assert len(lines) <= case.lines, lines
        assert all(line.startswith("error: ") for line in lines), lines
    for fragment in case.expected:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert not (tmp_path / MARKER).exists(), "a pickle ran code"
    assert finished_results(tmp_path) == before, "bad input left a result that looks complete"


def finished_results(root: Path) -> set[Path]:
    """Completed runs and export reports under `root`."""
    runs = {
        path
        for path in root.glob("runs/*/manifest.json")
        if json.loads(path.read_text()).get("status") == "completed"
    }
    return runs | set(root.glob("runs/*/export/export_report.json"))


def test_a_recipe_file_named_outside_ascii_in_a_c_locale_is_validated_not_a_crash(
    tmp_path: Path,
) -> None:
    """Without UTF-8 mode a C locale reads the file name's bytes as surrogates: the run-name
    check encoded them as UTF-8 and crashed (exit 3, a traceback)."""
    path = recipe(tmp_path, {"student": {"arch": "resnet8"}}, name="café.yaml")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "compressor", "recipe", "validate", os.fsencode(path)],
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
