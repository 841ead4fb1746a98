"""Reading weights files: unwrapping, prefixes, refusing code, and readable load reports."""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import random
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from compressor.errors import UserError
from compressor.models import create_model, detect_format, load_weights, read_state_dict
from tests.as_another_user import compress_as_nobody, open_folder
from tests.export.helpers import one_error_line


@pytest.fixture(scope="module")
def resnet8_weights() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("resnet8", num_classes=10).state_dict()


def _prefixed(state_dict: dict[str, torch.Tensor], prefix: str) -> OrderedDict:
    return OrderedDict((prefix + k, v) for k, v in state_dict.items())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": _prefixed(sd, "module."), "best_prec1": 91.7},
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"state": {}}},
        lambda sd: {"net": _prefixed(sd, "_orig_mod."), "acc": 90.0},
        lambda sd: {"student": sd},
        lambda sd: {"model": {"state_dict": _prefixed(sd, "module._orig_mod.")}},
        lambda sd: _prefixed(sd, "_orig_mod.module."),
    ],
    ids=[
        "plain",
        "state_dict+module",
        "model",
        "model_state_dict",
        "net+compile",
        "student",
        "nested+ddp_of_compile",
        "compile_of_ddp",
    ],
)
def test_unwraps_and_strips(tmp_path: Path, resnet8_weights: OrderedDict, wrap) -> None:
    path = tmp_path / "weights.pth"
    torch.save(wrap(resnet8_weights), path)
    loaded = read_state_dict(path)
    assert list(loaded) == list(resnet8_weights)
    assert all(torch.equal(loaded[k], v) for k, v in resnet8_weights.items())


def test_whole_model_object_needs_trust(tmp_path: Path) -> None:
    model = create_model("resnet8", num_classes=10)
    path = tmp_path / "whole.pt"
    torch.save({"model": model}, path)
    with pytest.raises(UserError, match=r"CifarResNet\) that could run code.*trust_pickle: true"):
        read_state_dict(path)
    assert set(read_state_dict(path, trust_pickle=True)) == set(model.state_dict())


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_without_running(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"w": torch.zeros(2)}, "extra": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=5))
    with pytest.raises(UserError) as error:
        read_state_dict(path)
    if writer == "torch.save":
        assert str(error.value).startswith(f"{path} contains pickled Python objects") and str(
            error.value
        ).endswith(
            "that could run code when loaded; if you trust this file set teacher.trust_pickle: true"
        )
    else:  # torch.load cannot read a plain pickle even trusted: no point asking for trust
        assert str(error.value) == (
            f"{path}: cannot read this file as a PyTorch checkpoint; it is truncated, corrupt "
            "or not written by torch.save"
        )
        with pytest.raises(UserError, match=r"not written by torch\.save"):
            read_state_dict(path, trust_pickle=True)
        marker.unlink()  # trusted, the full unpickler did run it before torch gave up
    assert not marker.exists()


def test_trusted_pickle_with_harmless_objects(tmp_path: Path, resnet8_weights) -> None:
    path = tmp_path / "with_args.pth"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": resnet8_weights}, path)
    with pytest.raises(UserError, match=r"\(argparse\.Namespace\)"):
        read_state_dict(path)
    assert len(read_state_dict(path, trust_pickle=True)) == len(resnet8_weights)


def test_newer_pickle_protocol_needs_trust(tmp_path: Path, resnet8_weights) -> None:
    """torch's safe loader reads only pickle protocol 2 (torch.save's default)."""
    path = tmp_path / "protocol4.pth"
    torch.save(resnet8_weights, path, pickle_protocol=4)
    with pytest.raises(UserError, match=r"if you trust this file set teacher\.trust_pickle: true"):
        read_state_dict(path)
    assert len(read_state_dict(path, trust_pickle=True)) == len(resnet8_weights)


def test_trusted_pickle_whose_class_is_gone(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "gone_model_mod.py").write_text(
        "import torch\nclass Net(torch.nn.Linear):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("gone_model_mod")
    path = tmp_path / "net.pt"
    torch.save(module.Net(2, 2), path)
    monkeypatch.delitem(sys.modules, "gone_model_mod")
    (tmp_path / "gone_model_mod.py").unlink()
    importlib.invalidate_caches()
    with pytest.raises(UserError, match=r"not importable here.*save model\.state_dict"):
        read_state_dict(path, trust_pickle=True)


@pytest.mark.parametrize("trust", [False, True])
def test_damaged_files(tmp_path: Path, resnet8_weights, trust: bool) -> None:
    good = tmp_path / "good.pth"
    torch.save(resnet8_weights, good)
    data = good.read_bytes()
    legacy = tmp_path / "legacy.pth"
    torch.save(resnet8_weights, legacy, _use_new_zipfile_serialization=False)
    damaged = {
        "truncated.pth": data[: len(data) // 2],
        "legacy_truncated.pth": legacy.read_bytes()[:-100],
        "random.pth": random.Random(0).randbytes(4096),
        "empty.pth": b"",
        "notes.pth": b"these are my weights\n",
    }
    if not trust:
        # A GLOBAL opcode first, then garbage: the weights-only unpickler refuses it with the
        # same words as a real pickled model ("Unsupported global: GLOBAL foo.bar"). (The full
        # unpickler imports `foo` before it reaches the garbage, and says so.)
        damaged["global_then_garbage.pth"] = b"cfoo\nbar\n" + random.Random(1).randbytes(64)
    for name, content in damaged.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UserError) as error:
            read_state_dict(path, trust_pickle=trust)
        message = str(error.value)
        assert message.startswith(f"{path}: cannot read this file as a PyTorch checkpoint")
        assert "truncated, corrupt or not written by torch.save" in message
        assert "weights_only" not in message  # torch's advice to drop the safety net: not ours


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.pth: file not found"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(UserError, match="is a directory"):
        read_state_dict(tmp_path)


def test_no_weights_inside(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "best": 91.2}, path)
    with pytest.raises(UserError, match=r"no weights found.*dict with keys: epoch, best"):
        read_state_dict(path)
    torch.save({"state_dict": {}}, path)  # said "a dict with keys: none"
    with pytest.raises(UserError, match=r"but the file holds an empty dict under state_dict$"):
        read_state_dict(path)


def test_programs_are_not_weights(tmp_path: Path) -> None:
    model = create_model("resnet8", num_classes=10).eval()
    scripted, exported = tmp_path / "model.ts", tmp_path / "model.bin"
    with warnings.catch_warnings():  # TorchScript is deprecated (torch 2.9+ warns)
        warnings.simplefilter("ignore", FutureWarning)
        # Traced, not scripted: the file is the same kind of program, and scripting compiles
        # torch's own Python source, which once failed here ("builtin cannot be used as a
        # value") for reasons outside this project.
        torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 32, 32)), scripted)
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 32, 32),)), exported)
    assert detect_format(scripted) == "torchscript" and detect_format(exported) == "export"
    with pytest.raises(UserError, match=r"is a TorchScript program.*format: auto"):
        read_state_dict(scripted)
    with pytest.raises(UserError, match=r"is a torch\.export program"):
        read_state_dict(exported)


def test_detect_format_of_weights(tmp_path: Path, resnet8_weights) -> None:
    zipped, legacy = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save(resnet8_weights, zipped)
    torch.save(resnet8_weights, legacy, _use_new_zipfile_serialization=False)
    assert detect_format(zipped) == detect_format(legacy) == "state_dict"
    assert detect_format(tmp_path / "anything.pt2") == "export"  # by suffix, before reading


def test_load_report_missing_keys(resnet8_weights) -> None:
    model = create_model("resnet20", num_classes=10)
    with pytest.raises(UserError) as error:
        load_weights(
            model, resnet8_weights, source="r8.pth", model_name="resnet20", data_classes=10
        )
    (line,) = error.value.lines  # one problem, the architecture: one line
    assert line.startswith("r8.pth: 60 weights of resnet20 are missing from the checkpoint: ")
    assert "layer1.1.conv1.weight" in line
    assert line.endswith(
        "(+55 more); is arch right? resnet20 expects layer1.0..layer1.2, the checkpoint has "
        "layer1.0..layer1.0; the checkpoint fits resnet8"
    )


def test_load_report_classes_and_unexpected(resnet8_weights) -> None:
    model = create_model("resnet8", num_classes=100)
    weights = dict(resnet8_weights, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(UserError) as error:
        load_weights(
            model,
            weights,
            source="r8.pth",
            model_name="resnet8",
            data_classes=100,
            arch_field="t.arch",
        )
    assert error.value.lines == [
        "r8.pth: 1 checkpoint weights do not exist in resnet8: extra.weight; is t.arch right? "
        "the layer names differ",
        "r8.pth: linear.weight: checkpoint [10, 64] vs model [100, 64] — the checkpoint was "
        "trained for 10 classes, the data has 100",
        "r8.pth: linear.bias: checkpoint [10] vs model [100] — the checkpoint was trained for "
        "10 classes, the data has 100",
    ]


def test_load_report_a_checkpoint_for_images_of_other_channels() -> None:
    """A teacher trained on grayscale digits, given colour images: the first convolution's
    input channels differ, which the shapes alone leave to the user to work out."""
    grayscale = create_model("resnet8", num_classes=10, in_channels=1).state_dict()
    with pytest.raises(UserError) as error:
        load_weights(
            create_model("resnet8", num_classes=10, in_channels=3),
            grayscale,
            source="digits.pt",
            model_name="resnet8",
            data_classes=10,
            data_channels=3,
            arch_field="t.arch",
        )
    assert error.value.lines == [
        "digits.pt: conv1.weight: checkpoint [16, 1, 3, 3] vs model [16, 3, 3, 3] — the "
        "checkpoint takes 1-channel images, the data has 3: it was trained on another data "
        "set; give a checkpoint trained on this one"
    ]


def test_load_report_a_stem_built_for_other_channels_than_the_data() -> None:
    """An entrypoint builds the stem it builds: a 1-channel model given a colour checkpoint
    for colour data is the model's mistake, not the checkpoint's data set."""
    colour = create_model("resnet8", num_classes=10, in_channels=3).state_dict()
    with pytest.raises(UserError) as error:
        load_weights(
            create_model("resnet8", num_classes=10, in_channels=1),
            colour,
            source="teacher.th",
            model_name="my.models:build",
            data_classes=10,
            data_channels=3,
            arch_field="teacher.entrypoint",
        )
    assert error.value.lines == [
        "teacher.th: conv1.weight: checkpoint [16, 3, 3, 3] vs model [16, 1, 3, 3] — the model "
        "built takes 1-channel images, the checkpoint 3; the data has 3: check "
        "teacher.entrypoint and its kwargs"
    ]


def test_load_report_a_head_built_for_other_classes_than_the_data(resnet8_weights) -> None:
    """An entrypoint's kwargs can build a head of another size than the data's classes: the
    message must not call the model's outputs the data's classes."""
    model = create_model("resnet8", num_classes=100)
    with pytest.raises(UserError) as error:
        load_weights(
            model,
            resnet8_weights,
            source="r8.pth",
            model_name="my.zoo:build",
            data_classes=10,
            arch_field="teacher.entrypoint",
        )
    assert error.value.lines == [
        "r8.pth: linear.weight: checkpoint [10, 64] vs model [100, 64] — the model built has "
        "100 outputs, the checkpoint 10; the data has 10 classes: check teacher.entrypoint and "
        f"its kwargs{KWARGS_HINT}",
        "r8.pth: linear.bias: checkpoint [10] vs model [100] — the model built has 100 outputs, "
        f"the checkpoint 10; the data has 10 classes: check teacher.entrypoint and its kwargs"
        f"{KWARGS_HINT}",
    ]


KWARGS_HINT = (
    " (num_classes: 10 in kwargs, where the function takes it through **kwargs, as "
    "torchvision's do)"
)


def test_load_accepts_old_batch_norm_and_lightning_names(resnet8_weights) -> None:
    old = {k: v for k, v in resnet8_weights.items() if not k.endswith("num_batches_tracked")}
    lightning = {f"model.{k}": v for k, v in old.items()}
    model = create_model("resnet8", num_classes=10)
    load_weights(model, lightning, source="pl.ckpt", model_name="resnet8", data_classes=10)
    assert torch.equal(model.linear.weight, resnet8_weights["linear.weight"])


@pytest.mark.parametrize("wrapper", ["module", "_orig_mod"])
def test_a_model_whose_inner_model_is_named_like_a_wrapper_loads_its_own_weights(
    tmp_path: Path, wrapper: str
) -> None:
    """A user's wrapper keeping its model as `self.module`: the file is its own state_dict(),
    but `module.` was stripped as DataParallel's, and every layer was named missing."""

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, wrapper, create_model("resnet8", num_classes=10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return getattr(self, wrapper)(x)

    saved = Wrapper()
    path = tmp_path / "wrapped.pt"
    torch.save(saved.state_dict(), path)
    model = Wrapper()
    weights = read_state_dict(path)
    load_weights(model, weights, source="w.pt", model_name="my:build", data_classes=10)
    for key, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    ddp = {f"module.{key}": value for key, value in saved.state_dict().items()}
    torch.save(ddp, path)  # and the same wrapped by DataParallel
    load_weights(Wrapper(), read_state_dict(path), source="w.pt", model_name="m", data_classes=10)


@pytest.mark.parametrize(
    ("convert", "problem"),
    [
        (lambda t: t.to_sparse(), "conv1.weight is a sparse_coo tensor"),
        (lambda t: t.to("meta"), "conv1.weight is a meta tensor (it holds no values)"),
        (lambda t: t.to(torch.int64), "conv1.weight is int64, not floating point"),
        (lambda t: t.to(torch.complex64), "conv1.weight is complex64, not floating point"),
    ],
    ids=["sparse", "meta", "integer", "complex"],
)
def test_load_refuses_weights_that_are_not_dense_floats(
    resnet8_weights: OrderedDict, convert, problem: str
) -> None:
    """load_state_dict failed on sparse and meta tensors in torch's words (exit 3), and copied
    integer weights into the model as they were."""
    weights = OrderedDict(
        (key, convert(value) if key == "conv1.weight" else value)
        for key, value in resnet8_weights.items()
    )
    model = create_model("resnet8", 10, 3)
    with pytest.raises(UserError) as error:
        load_weights(model, weights, source="r8.pth", model_name="resnet8", data_classes=10)
    assert error.value.lines == [
        f"r8.pth: {problem}; weights are dense floating-point tensors: save the float model's "
        "state_dict(), before any quantisation"
    ]


def test_a_sparse_checkpoint_is_read_without_torch_warning_first(
    resnet8_weights: OrderedDict, tmp_path: Path
) -> None:
    """torch warns of its sparse-invariant scan while reading; the refusal that follows is
    the one line the user should see."""
    path = tmp_path / "sparse.pth"
    torch.save(
        {**resnet8_weights, "conv1.weight": resnet8_weights["conv1.weight"].to_sparse()}, path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = read_state_dict(path)
    assert weights["conv1.weight"].is_sparse


def test_a_checkpoint_this_user_may_not_read_is_said_so_not_called_corrupt() -> None:
    with open_folder() as folder:
        teacher = folder / "teacher.pt"
        torch.save(create_model("resnet8", 10, 1).state_dict(), teacher)
        teacher.chmod(0o600)  # root's own
        recipe = folder / "r.yaml"
        recipe.write_text(
            f"teacher: {{arch: resnet8, checkpoint: {teacher}}}\n"
            "student: {arch: resnet8}\nmethod: {name: kd}\n"
        )
        said = compress_as_nobody(folder, "teacher", str(recipe))
        assert one_error_line(said) == (
            f"error: {teacher}: cannot read it (Permission denied); make it readable by this user"
        )
