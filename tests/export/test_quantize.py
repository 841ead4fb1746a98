"""export/quantize.py on small real models: the calibration draw, the settings that decide the
Q/DQ form, and one clear UserError for every model ONNX Runtime's tools cannot quantise."""

from __future__ import annotations

import logging
import tempfile
import traceback
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from compressor.errors import UserError
from compressor.recipe import Int8Config
from export.onnx_export import export_onnx
from export.onnx_inspect import read_metadata
from export.quantize import (
    Int8Settings,
    _optimisation_failures,
    calibration_batch,
    quantize_int8,
    resolve_settings,
)
from export.validate import EvalSet
from tests.disk_full import file_size_limit, needs_file_size_limits

SHAPE = (1, 8, 8)


def _train_set(count: int = 200) -> EvalSet:
    rng = np.random.default_rng(0)
    return EvalSet(
        name="toy",
        images=rng.integers(0, 256, size=(count, *SHAPE), dtype=np.uint8),
        labels=np.arange(count) % 10,
        mean=(0.5,),
        std=(0.25,),
    )


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()
    path = tmp_path_factory.mktemp("quantize") / "toy.onnx"
    export_onnx(model, path, image_shape=SHAPE, opset=18, metadata={"classes": list("0123456789")})
    return path


def _settings(**changes: object) -> Int8Settings:
    base = {
        "calibration_images": 64,
        "calibration_seed": 0,
        "calibration_method": "minmax",
        "per_channel": True,
        "activations": "uint8",
        "reduce_range": False,
    }
    return Int8Settings(**(base | changes))  # type: ignore[arg-type]


def test_calibration_draw_is_balanced_normalised_and_repeatable() -> None:
    train = _train_set()
    images = calibration_batch(train, 50, seed=3)
    assert images.shape == (50, *SHAPE) and images.dtype == np.float32
    again = calibration_batch(train, 50, seed=3)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, calibration_batch(train, 50, seed=4))
    pixels = train.images.astype(np.float32) / 255.0
    assert images.min() >= (pixels.min() - 0.5) / 0.25 - 1e-6
    # Every training image normalised; the draw must be a subset of them, five per class.
    normalised = {image.tobytes() for image in ((pixels - 0.5) / 0.25).astype(np.float32)}
    assert all(image.tobytes() in normalised for image in images)


def test_more_calibration_images_than_training_images() -> None:
    with pytest.raises(UserError, match=r"only 200 images; calibrate on all of them with --cal"):
        calibration_batch(_train_set(), 512, seed=0)
    with pytest.raises(
        UserError, match=r"only 200 images \(the run's data.max_train_samples 200\)"
    ):
        calibration_batch(_train_set(), 512, seed=0, max_train_samples=200)


def test_activation_type_follows_the_backends() -> None:
    assert resolve_settings(Int8Config(), tensorrt=False).activations == "uint8"
    assert resolve_settings(Int8Config(), tensorrt=True).activations == "int8"
    assert resolve_settings(Int8Config(activations="int8"), tensorrt=False).activations == "int8"
    with pytest.raises(UserError, match=r"TensorRT .* symmetric int8"):
        resolve_settings(Int8Config(activations="uint8"), tensorrt=True)


@pytest.mark.parametrize("saturates", [True, False])
def test_7_bit_weights_by_default_where_the_cpu_s_int8_kernels_saturate(
    monkeypatch: pytest.MonkeyPatch, saturates: bool
) -> None:
    """On an x86 CPU without VNNI the int8 kernels saturate (95.6 % agreement at 8 bits with
    uint8 activations, 86.4 % with TensorRT's int8 ones); with VNNI the full 8 bits are
    kept; a recipe's own choice stands either way."""
    monkeypatch.setattr("export.quantize.x86_without_vnni", lambda: saturates)
    assert resolve_settings(Int8Config(), tensorrt=False).reduce_range is saturates
    assert resolve_settings(Int8Config(), tensorrt=True).reduce_range is saturates
    for asked in (True, False):
        settings = resolve_settings(Int8Config(reduce_range=asked), tensorrt=False)
        assert settings.reduce_range is asked
        weights = "int7 symmetric" if asked else "int8 symmetric"
        assert settings.metadata()["int8_weights"] == weights


def test_reduce_range_quantises_the_weights_to_7_bits(fp32_model: Path, tmp_path: Path) -> None:
    images = calibration_batch(_train_set(), 64, seed=0)
    largest = {}
    for reduce_range in (False, True):
        target = tmp_path / f"toy.{reduce_range}.onnx"
        quantize_int8(fp32_model, target, images, _settings(reduce_range=reduce_range), name="toy")
        weights = [
            onnx.numpy_helper.to_array(tensor)
            for tensor in onnx.load(target).graph.initializer
            if tensor.data_type == TensorProto.INT8 and tensor.dims
        ]
        largest[reduce_range] = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest == {False: 127, True: 64}


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibration_method_quantises(
    fp32_model: Path, tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths, as a user types them, resolve against the user's directory."""
    monkeypatch.chdir(fp32_model.parent)
    target = tmp_path / "toy.int8.onnx"
    images = calibration_batch(_train_set(), 64, seed=0)
    settings = _settings(calibration_method=method)
    quantize_int8(Path(fp32_model.name), target, images, settings, name="toy")
    metadata = read_metadata(target)
    assert metadata["precision"] == "int8"
    assert metadata["int8_calibration_method"] == method
    assert metadata["int8_calibration_seed"] == 0
    assert metadata["classes"] == list("0123456789")


def test_the_calibration_method_sets_the_activation_scales(
    fp32_model: Path, tmp_path: Path
) -> None:
    """Each method is the one ONNX Runtime calibrates with: percentile clips the range min-max
    spans, so the scales differ (the metadata alone would name a method never used)."""
    images = calibration_batch(_train_set(), 64, seed=0)
    scales = {}
    for method in ("minmax", "percentile"):
        target = tmp_path / f"toy.{method}.onnx"
        quantize_int8(fp32_model, target, images, _settings(calibration_method=method), name="toy")
        scales[method] = {
            tensor.name: onnx.numpy_helper.to_array(tensor).tolist()
            for tensor in onnx.load(target).graph.initializer
            if tensor.name.endswith("_scale")
        }
    assert scales["minmax"].keys() == scales["percentile"].keys() != set()
    assert scales["minmax"] != scales["percentile"]


def test_symmetric_int8_activations_for_tensorrt(fp32_model: Path, tmp_path: Path) -> None:
    """TensorRT's explicit quantisation: int8 with zero point 0 everywhere."""
    target = tmp_path / "toy.int8.onnx"
    images = calibration_batch(_train_set(), 64, seed=0)
    quantize_int8(fp32_model, target, images, _settings(activations="int8"), name="toy")
    proto = onnx.load(str(target))
    initializers = {init.name: init for init in proto.graph.initializer}
    zero_points = [
        initializers[node.input[2]]
        for node in proto.graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2
    ]
    assert zero_points
    for zero_point in zero_points:
        assert zero_point.data_type == TensorProto.INT8
        assert not onnx.numpy_helper.to_array(zero_point).any()


@pytest.mark.parametrize(("per_channel", "elements"), [(True, 8), (False, 1)])
def test_weight_scales_per_channel_or_per_tensor(
    fp32_model: Path, tmp_path: Path, per_channel: bool, elements: int
) -> None:
    """The first convolution has 8 output channels: 8 weight scales, or 1 per tensor."""
    target = tmp_path / "toy.int8.onnx"
    images = calibration_batch(_train_set(), 64, seed=0)
    quantize_int8(fp32_model, target, images, _settings(per_channel=per_channel), name="toy")
    proto = onnx.load(str(target))
    scales = {init.name: onnx.numpy_helper.to_array(init).size for init in proto.graph.initializer}
    conv_weight_scales = [size for name, size in scales.items() if name == "0.weight_scale"]
    assert conv_weight_scales == [elements], sorted(scales)


def _save(graph: onnx.GraphProto, path: Path, opsets: list[onnx.OperatorSetIdProto]) -> Path:
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.save(model, str(path))
    return path


def _io() -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    return (
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *SHAPE]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
    )


def test_a_model_with_nothing_to_quantise(tmp_path: Path) -> None:
    image, logits = _io()
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [10])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["logits"]),
        ],
        "no-weights",
        [image],
        [logits],
        [starts, ends, axes],
    )
    path = _save(graph, tmp_path / "slice.onnx", [helper.make_opsetid("", 18)])
    images = calibration_batch(_train_set(), 64, seed=0)
    with pytest.raises(UserError, match=r"found nothing to quantise in slice\.onnx"):
        quantize_int8(path, tmp_path / "out.onnx", images, _settings(), name="student")
    assert not (tmp_path / "out.onnx").exists()


def test_a_model_onnx_runtime_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A custom-domain operator: valid ONNX, but no ONNX Runtime kernel to calibrate with.
    ONNX Runtime's shape inference dumps a file into the working directory when it fails;
    none may be left in the user's."""
    monkeypatch.chdir(tmp_path)
    image, logits = _io()
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["input"], ["logits"], domain="example.custom")],
        "custom-op",
        [image],
        [logits],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("example.custom", 1)]
    path = _save(graph, tmp_path / "custom.onnx", opsets)
    images = calibration_batch(_train_set(), 64, seed=0)
    with pytest.raises(UserError, match=r"ONNX Runtime cannot quantise custom\.onnx") as caught:
        quantize_int8(path, tmp_path / "out.onnx", images, _settings(), name="student")
    assert len(caught.value.lines) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom.onnx"]


@needs_file_size_limits
def test_a_failed_write_to_the_scratch_folder_is_named_not_blamed_on_the_model(
    fp32_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ONNX Runtime's tools write the prepared and quantised models to a scratch folder; a
    write that failed there (here: a file-size limit, as a full disk would) was reported as a
    model ONNX Runtime cannot quantise, "drop --int8". Its optimiser's traceback and advice
    for its own command line (`--skip_optimization`) stay off the terminal, and the folder
    named is TMPDIR's, not the scratch folder already removed."""
    images = calibration_batch(_train_set(), 64, seed=0)
    with file_size_limit(fp32_model.stat().st_size // 2), pytest.raises(UserError) as caught:
        quantize_int8(fp32_model, tmp_path / "out.onnx", images, _settings(), name="student")
    [line] = caught.value.lines
    assert line.startswith(
        f"student: cannot write ONNX Runtime's quantisation files in {tempfile.gettempdir()} ("
    )
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err and "skip_optimization" not in printed.err
    assert line.endswith(
        "(File too large); the file is larger than this process may write (see `ulimit -f`) "
        "(TMPDIR chooses where they go)"
    )
    assert not (tmp_path / "out.onnx").exists()


def test_an_already_quantised_model(fp32_model: Path, tmp_path: Path) -> None:
    images = calibration_batch(_train_set(), 64, seed=0)
    once = tmp_path / "once.onnx"
    quantize_int8(fp32_model, once, images, _settings(), name="toy")
    with pytest.raises(UserError, match="is already int8"):
        quantize_int8(once, tmp_path / "twice.onnx", images, _settings(), name="toy")


def test_a_preactivation_batchnorm_quantises_without_a_line_per_layer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A BatchNorm after a ReLU (a WRN's `bn1`) cannot be folded into a conv, and ONNX Runtime
    logged "Axis 1 is out-of-range for weight ..." for each such layer's 1-D scale."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    source = tmp_path / "bn.onnx"
    export_onnx(model, source, image_shape=SHAPE, opset=18, metadata={})
    quantize_int8(
        source,
        tmp_path / "bn.int8.onnx",
        calibration_batch(_train_set(), 64, 0),
        _settings(),
        name="student",
    )
    kinds = [node.op_type for node in onnx.load(str(tmp_path / "bn.int8.onnx")).graph.node]
    assert "BatchNormalization" in kinds  # the case: a normalisation left unfolded
    assert not [r for r in caplog.records if "out-of-range" in r.getMessage()]


def test_a_graph_optimisation_onnx_runtime_logs_as_failed_is_one_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """quant_pre_process logs a failed optimisation (a full TMPDIR) as its traceback and
    advice for its own command line, then goes on without it; what is left is one line."""
    logger = logging.getLogger("onnxruntime.quantization.shape_inference")
    with _optimisation_failures() as failures:
        try:
            raise OSError(28, "No space left on device")
        except OSError:  # as ONNX Runtime 1.2x logs it
            logger.error("ONNX Runtime Model Optimization Failed! Consider rerun with option.")
            logger.error(traceback.format_exc())
    assert failures == ["OSError: [Errno 28] No space left on device"]
    assert capfd.readouterr().err == ""
    assert logger.propagate and not logger.handlers


def test_a_model_whose_activations_are_nan_is_said_to_be_broken(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Calibration on NaN activations: numpy's "All-NaN axis" warnings, then "scale issue",
    which sent the user to quantise elsewhere a model that no quantiser can help."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    path = tmp_path / "broken.onnx"
    export_onnx(model, path, image_shape=SHAPE, opset=18, metadata={})
    images = calibration_batch(_train_set(), 64, seed=0)
    with pytest.raises(UserError) as caught:
        quantize_int8(path, tmp_path / "out.onnx", images, _settings(), name="student")
    assert str(caught.value) == (
        "student: ONNX Runtime cannot quantise broken.onnx to INT8: its activations on the "
        "calibration images are NaN or infinite (AssertionError: scale issue), so the model "
        "itself is broken; train it again (a lower train.optimizer.lr)"
    )
    assert "RuntimeWarning" not in capfd.readouterr().err


def test_the_recipe_s_seed_and_per_channel_reach_the_settings_and_metadata() -> None:
    """The seed says which training images were drawn for calibration, and per_channel how
    the weights were scaled: a file recorded with other values than it was made with cannot
    be made again, nor told from one that was made otherwise."""
    settings = resolve_settings(Int8Config(seed=7, per_channel=False), tensorrt=False)
    assert (settings.calibration_seed, settings.per_channel) == (7, False)
    metadata = settings.metadata()
    assert metadata["int8_calibration_seed"] == "7"
    assert metadata["int8_per_channel"] == "false"
    assert _settings(per_channel=True).metadata()["int8_per_channel"] == "true"


def test_exactly_as_many_calibration_images_as_training_images_is_the_most_allowed() -> None:
    """One image more than the training split holds cannot be drawn: silently drawing fewer
    would quantise with another count than the file's metadata and report record."""
    assert calibration_batch(_train_set(40), 40, seed=0).shape == (40, *SHAPE)
    with pytest.raises(UserError, match=r"41 calibration images asked for .* has only 40 images"):
        calibration_batch(_train_set(40), 41, seed=0)


def test_a_split_smaller_than_the_default_calibration_says_the_count_to_ask_for() -> None:
    """An image folder of 36 training images met the default 512 with "ask for fewer": the
    message gives the number that works."""
    with pytest.raises(UserError) as refused:
        calibration_batch(_train_set(36), 512, seed=0)
    assert str(refused.value).endswith(
        "the training split has only 36 images; calibrate on all of them with "
        "--calibration-images 36 (or export.int8.calibration_images: 36)"
    )
    with pytest.raises(UserError, match=r"only 20 images; INT8 needs at least 32: train on more"):
        calibration_batch(_train_set(20), 32, seed=0)
