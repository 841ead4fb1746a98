"""The recipe's sections (teacher, student, data, train, export, gate, output) and the whole.

These pydantic models are the single source of defaults and validation. A section's class
docstring is its description in the JSON schema editors show (`compress recipe schema`), so
only sections with something to tell the user have one.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from compressor.recipe.methods import CEMethod, MethodConfig
from compressor.recipe.paths import (
    MAX_NAME_BYTES,
    OutputPath,
    UserPath,
    WithInputPaths,
    read_user_path,
)
from compressor.recipe.strict import Strict, started

DATA_ROOT_ENV = "COMPRESSOR_DATA_ROOT"
_ENTRYPOINT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
# ASCII digits without a leading 0 and at most two: torch refuses `cuda:01` with a crash of
# its own, and wraps `cuda:128` round to device -128.
_DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:(0|[1-9][0-9]?))?)$"
_RUN_NAME_PATTERN = r"^[\w.-]+$"
# Windows reserves these, with any extension, in any case; COM0-9 and LPT0-9 with the
# superscript digits too.
_WINDOWS_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
# --overwrite sets a run aside as NAME.replaced, which must fit in a folder name too.
MAX_RUN_NAME_BYTES = MAX_NAME_BYTES - len(".replaced")
# What each pattern means, for error messages: a regular expression is not an explanation.
PATTERN_HELP = {
    _ENTRYPOINT_PATTERN: "expected 'module:function', e.g. my_models.zoo:build_teacher",
    _DEVICE_PATTERN: "expected auto, cpu, mps, cuda or cuda:N (N a GPU index, 0 to 99)",
    _RUN_NAME_PATTERN: "use letters, digits, '_', '-' and '.' only (it names a folder)",
}


# Deeper, the run's recipe hash (pydantic's serialiser stops at about 255 levels) crashed
# the run after `recipe validate` called the recipe valid. No constructor needs a tenth of it.
_MAX_KWARGS_DEPTH = 32


def _json_data(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what recipe.yaml, written as JSON data, would not give back as it was read.

    Why: YAML reads `{0: 16}`, dates and `.inf`, which the run's recipe.yaml stores as
    `'0'`, a string and null. The resumed recipe then differs from the run's (refused every
    time), and export would build the model from other kwargs than training did.
    """
    if depth > _MAX_KWARGS_DEPTH and isinstance(value, dict | list):
        raise ValueError(f"{where}: nested more than {_MAX_KWARGS_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: the key {key!r} is not text; quote it ('{key}')")
            _json_data(item, f"{where}.{key}" if where else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_data(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError(
            f"{where}: a {type(value).__name__} ({value!r}); kwargs hold text, numbers, "
            "true/false, null, lists and mappings: quote it to pass it as text"
        )


def _kwargs_as_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    _json_data(kwargs, "")
    return kwargs


# A model's constructor arguments, as the run's recipe.yaml can keep them.
Kwargs = Annotated[dict[str, Any], AfterValidator(_kwargs_as_json)]


class TeacherConfig(WithInputPaths):
    """Where the teacher comes from. See docs: zoo name, `module:callable`, TorchScript, .pt2."""

    arch: str | None = Field(None, description="Model zoo or torchvision name, e.g. resnet56.")
    entrypoint: str | None = Field(
        None,
        pattern=_ENTRYPOINT_PATTERN,
        description="'package.module:callable' returning an nn.Module; imported only when set.",
    )
    kwargs: Kwargs = Field(default_factory=dict, description="Constructor arguments.")
    checkpoint: UserPath | None = Field(None, description="Weights, TorchScript or .pt2 file.")
    format: Literal["auto", "state_dict", "torchscript", "export"] = "auto"
    trust_pickle: bool = Field(
        False,
        description="Allow full pickle loading and TorchScript/.pt2 programs (both run code "
        "from the file). Only if trusted.",
    )
    num_classes: int | None = Field(None, ge=2, description="Defaults to the data set's.")
    min_accuracy: float = Field(
        0.0, ge=0.0, le=100.0, description="Stop before distilling if the teacher scores below (%)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> TeacherConfig:
        if self.arch and self.entrypoint:
            raise ValueError("give either arch or entrypoint, not both")
        self_contained = self.format in ("torchscript", "export") or (
            self.format == "auto" and self.checkpoint is not None
        )
        if not (self.arch or self.entrypoint or self_contained):
            raise ValueError(
                "the teacher needs arch (zoo name), entrypoint (module:callable) or a "
                "TorchScript/.pt2 checkpoint"
            )
        if self.format in ("torchscript", "export") and self.checkpoint is None:
            raise ValueError(f"format {self.format!r} needs a checkpoint file")
        if self.arch:
            _no_data_set_arguments(self.kwargs, "teacher")
        return self

    def builder(self) -> str:
        """The recipe field that builds the teacher's model, for messages about a teacher
        without a checkpoint (its weights are whatever that code draws)."""
        if self.entrypoint:
            return f"teacher.entrypoint {self.entrypoint}"
        return f"teacher.arch {self.arch}"


def _bound_items(schema: dict[str, Any], **bounds: float) -> None:
    """Add bounds to the items of an optional, non-empty list's JSON schema, for editors;
    the message for a value outside them is the field validator's."""
    for option in schema["anyOf"]:
        if option.get("type") == "array":
            option["items"].update(bounds)
            option["minItems"] = 1


# What a zoo or torchvision model is built with from the data set itself.
_DATA_SET_ARGUMENTS = ("num_classes", "in_channels")


def _no_data_set_arguments(kwargs: dict[str, Any], section: str) -> None:
    given = [name for name in _DATA_SET_ARGUMENTS if name in kwargs]
    if given:
        raise ValueError(
            f"kwargs may not set {' or '.join(given)}: the {section} is built with the data "
            "set's class and channel counts; remove it from kwargs"
        )


class StudentConfig(Strict):
    arch: str = Field(description="Model zoo or torchvision name, e.g. resnet8, mobilenetv2.")
    kwargs: Kwargs = Field(default_factory=dict, description="Constructor arguments.")

    @model_validator(mode="after")
    def _kwargs_leave_the_data_set_alone(self) -> StudentConfig:
        _no_data_set_arguments(self.kwargs, "student")
        return self


DatasetName = Literal["digits", "cifar10", "cifar100", "tiny_imagenet", "imagefolder"]


# The data sets `data.download` fetches (compressor/data/cifar.py).
_DOWNLOADABLE = ("cifar10", "cifar100")


class DataConfig(WithInputPaths):
    name: DatasetName = "digits"
    root: UserPath | None = Field(
        None, description=f"Data directory; defaults to ${DATA_ROOT_ENV}. Not used by digits."
    )
    download: bool = Field(
        False, description="Let torchvision download CIFAR-10/100 if missing (CIFAR only)."
    )
    image_size: int | None = Field(
        None, ge=8, le=1024, description="Resize once at load time; default: native size."
    )
    mean: tuple[float, ...] | None = Field(
        None,
        description="Per-channel mean on [0, 1] pixels.",
        json_schema_extra=lambda schema: _bound_items(schema, minimum=0.0, maximum=1.0),
    )
    std: tuple[float, ...] | None = Field(
        None,
        description="Per-channel std on [0, 1] pixels.",
        json_schema_extra=lambda schema: _bound_items(schema, minimum=MIN_STD, maximum=1.0),
    )
    channels: Literal[1, 3] | None = Field(
        None,
        description="Image folders only: 1 reads every image as grayscale (one channel), "
        "3 as RGB (the default).",
    )
    crop_padding: int | None = Field(None, ge=0, le=64, description="Random-crop padding.")
    flip: bool | None = Field(None, description="Random horizontal flip; default per data set.")
    max_train_samples: int | None = Field(None, ge=1, description="Class-balanced subset.")
    max_test_samples: int | None = Field(None, ge=1, description="Class-balanced subset.")

    @field_validator("mean", "std")
    @classmethod
    def _on_the_unit_scale(
        cls, values: tuple[float, ...] | None, info: ValidationInfo
    ) -> tuple[float, ...] | None:
        """Pixels are scaled to 0–1 before `(x - mean) / std`: statistics on the 0–255 scale,
        as many papers print them, would feed the model inputs around -2 and train it
        quietly worse. (A started run's recipe is read as written: this check came later.)"""
        if values is None or started(info):
            return values
        for value in values:  # a std <= 0 is refused below, for started runs too
            if 1 < value <= 255:
                raise ValueError(
                    f"{value:g} is on the 0–255 scale; give values on the 0–1 scale (divide by 255)"
                )
            if value > 1 or (value < 0 and info.field_name == "mean"):
                raise ValueError(
                    f"{value:g} is outside [0, 1]; pixels are scaled to 0–1 before normalising"
                )
        return values

    @model_validator(mode="after")
    def _root_and_stats(self) -> DataConfig:
        if self.root is None and self.name != "digits" and os.environ.get(DATA_ROOT_ENV):
            # As if the recipe said `root: ${COMPRESSOR_DATA_ROOT}`.
            self.root, self._path_sources["root"] = read_user_path(f"${{{DATA_ROOT_ENV}}}", None)
        if self.channels is not None and self.name != "imagefolder":
            raise ValueError(
                f"channels is for image folders; {self.name} images have their own channel "
                "count: leave it out"
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if not self.mean:
                raise ValueError(
                    "mean and std are empty; give one value per image channel, or leave both "
                    "out for the data set's own"
                )
            if len(self.mean) != len(self.std):
                raise ValueError("mean and std need one value per channel each")
            if any(s <= 0 for s in self.std):
                raise ValueError("std values must be > 0")
            tiny = [s for s in self.std if s < MIN_STD]
            if tiny:
                # Dividing by it gives pixels float32 cannot hold: NaN logits, then an error
                # that blames the teacher's weights or the learning rate.
                raise ValueError(
                    f"std {tiny[0]:g} is below {MIN_STD:g}, less spread than any data set's "
                    "(a std near 1e-38 makes normalised pixels overflow float32); give the "
                    "standard deviation of pixels on the 0–1 scale"
                )
        return self

    @model_validator(mode="after")
    def _no_setting_the_data_set_ignores(self, info: ValidationInfo) -> DataConfig:
        """A root or a download the data set would ignore is an error: the user believes the
        data comes from there."""
        if started(info):
            return self
        if self.name == "digits" and self.root is not None:
            raise ValueError(
                "digits is embedded and reads no files, so root is not used; drop it, or name "
                "the data set that lives there"
            )
        if self.download and self.name not in _DOWNLOADABLE:
            raise ValueError(
                f"only {' and '.join(_DOWNLOADABLE)} can be downloaded, not {self.name}; drop "
                "download and set root to where the data is"
            )
        return self


MIN_STD = 1e-6  # pixels on the 0–1 scale; a smaller spread is a typo, not a data set


class OptimizerConfig(Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only.")
    weight_decay: float = Field(5e-4, ge=0.0)
    nesterov: bool = Field(False, description="SGD only; needs momentum > 0.")

    @model_validator(mode="after")
    def _no_setting_the_optimizer_ignores(self, info: ValidationInfo) -> OptimizerConfig:
        """A setting that would be silently dropped is an error, as a typo is. Judged by value,
        not by which keys were written: a run's recipe.yaml spells out every default."""
        if started(info):
            return self
        if self.name == "adamw" and (self.nesterov or self.momentum != _SGD_MOMENTUM):
            raise ValueError(
                "adamw takes no momentum or nesterov (they are SGD's); remove them or use sgd"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


_SGD_MOMENTUM = OptimizerConfig.model_fields["momentum"].default


class ScheduleConfig(Strict):
    name: Literal["multistep", "cosine", "constant"] = "cosine"
    milestones: list[int] = Field(
        default_factory=list,
        description="Epochs (multistep).",
        # For editors; the message for a value outside them is the model validator's.
        json_schema_extra={"items": {"type": "integer", "minimum": 1}, "uniqueItems": True},
    )
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _sorted_milestones(self, info: ValidationInfo) -> ScheduleConfig:
        if self.milestones != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError("milestones must be increasing epoch numbers >= 1")
        if started(info):
            return self
        if self.name == "multistep" and not self.milestones:
            raise ValueError(
                "multistep needs milestones (epochs where the lr is multiplied by gamma)"
            )
        if self.name != "multistep" and (self.milestones or self.gamma != _MULTISTEP_GAMMA):
            raise ValueError(
                f"milestones and gamma are multistep's; a {self.name} schedule would ignore "
                "them: remove them or use name: multistep"
            )
        early = [m for m in self.milestones if m < self.warmup_epochs]
        if early:
            # The warm-up ramps to the full lr, and its milestones all fall at its end.
            raise ValueError(
                f"milestone {early[0]} falls inside the warm-up ({self.warmup_epochs} epochs), "
                "where the lr still rises to its full value; move milestones to "
                f"{self.warmup_epochs} or later, or shorten the warm-up"
            )
        return self


_MULTISTEP_GAMMA = ScheduleConfig.model_fields["gamma"].default


# Torch takes seeds below 2**64 and thread counts that fit a C int: past those a recipe
# would crash the run, not be refused. 2**32 - 1 is the seed range most tools share.
MAX_SEED = 2**32 - 1
MAX_THREADS = 4096


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(128, ge=2)
    eval_batch_size: int = Field(512, ge=1)
    eval_every: int = Field(
        1,
        ge=1,
        description="Score the student on the test set every N epochs and after the last; the "
        "epochs in between log no test figures (long schedules on small training sets, large "
        "test sets).",
    )
    max_steps_per_epoch: int | None = Field(None, ge=1, description="Cut epochs short.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    grad_clip_norm: float | None = Field(
        None, gt=0.0, description="Clip the gradient's global L2 norm (off by default)."
    )
    seed: int = Field(0, ge=0, le=MAX_SEED)
    deterministic: bool = Field(False, description="Deterministic kernels (slower).")
    device: str = Field("auto", pattern=_DEVICE_PATTERN)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool | None = Field(None, description="Default: on for CUDA and CPU.")
    compile: bool = False
    num_threads: int | None = Field(
        None, ge=1, le=MAX_THREADS, description="CPU threads; default: torch's."
    )

    @model_validator(mode="after")
    def _milestones_within(self, info: ValidationInfo) -> TrainConfig:
        # Epoch e (from 0) trains at the lr of milestones <= e: one at `epochs` never applies.
        # (A run started before this was checked has milestones <= epochs.)
        if started(info) and any(m > self.epochs for m in self.schedule.milestones):
            raise ValueError(f"schedule milestones must be <= epochs ({self.epochs})")
        if not started(info) and any(m >= self.epochs for m in self.schedule.milestones):
            raise ValueError(
                f"schedule milestones must be < epochs ({self.epochs}); a milestone at or past "
                "the last epoch never applies"
            )
        if (
            self.schedule.warmup_epochs >= self.epochs
            and self.schedule.warmup_epochs
            and (self.epochs > 1 or not started(info))
        ):
            raise ValueError(
                f"schedule.warmup_epochs must be smaller than epochs ({self.epochs}): the run "
                "would end before the lr reaches its set value"
            )
        return self

    @model_validator(mode="after")
    def _amp_on_cuda(self) -> TrainConfig:
        # `auto` may find a GPU where the run goes; a device named here never will be one.
        if self.amp in ("bf16", "fp16") and self.device in ("cpu", "mps"):
            raise ValueError(
                f"amp {self.amp!r} is mixed precision on CUDA, but device is {self.device!r}; "
                "set train.amp: auto or off, or train.device: cuda"
            )
        return self


class Int8Config(Strict):
    """`compress export --int8`: static post-training quantisation with ONNX Runtime's tools.

    Calibration images come from the recipe's training split (never the test split the report
    scores on), preprocessed exactly as at evaluation: no augmentation, the run's mean/std.
    """

    calibration_images: int = Field(
        512,
        ge=32,
        description="Training images whose activation ranges set the scales; fewer than 32 "
        "gives ranges that depend on which images were drawn.",
    )
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax",
        description="How activation ranges are chosen: minmax (fast), entropy or percentile "
        "(99.999; clip rare outliers).",
    )
    per_channel: bool = Field(
        True, description="One weight scale per output channel (per tensor when false)."
    )
    activations: Literal["auto", "uint8", "int8"] = Field(
        "auto",
        description="Activation type: uint8 (asymmetric; fastest in ONNX Runtime on x86), int8 "
        "(symmetric; what TensorRT accepts). auto: int8 with --trt, else uint8.",
    )
    reduce_range: Literal["auto", True, False] = Field(
        "auto",
        description="7-bit weights (ONNX Runtime's reduce_range). The int8 kernels of x86 CPUs "
        "without VNNI saturate 8-bit products: on such a CPU a ResNet-8's INT8 file agreed "
        "with PyTorch on 95.6 % of test images with uint8 activations and 86.4 % with int8 "
        "ones, and on 99 % and more with 7-bit weights. auto: on for an x86 CPU without VNNI.",
    )

    @field_validator("reduce_range", mode="before")
    @classmethod
    def _true_false_or_auto(cls, value: object) -> object:
        # A Literal takes 1 for True and reads "true" as no member: one line says both.
        if isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f"write true, false or auto (got {value!r})")

    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Which training images are drawn for calibration."
    )


MAX_RUNS = 100_000  # warm-up or timed runs per latency: hours for a teacher at batch 64


class ExportConfig(Strict):
    """`compress export`: ONNX opset, latency batch sizes, parity tolerances per precision."""

    opset: int = Field(
        18,
        ge=13,
        le=23,
        description="ONNX opset. torch's exporter writes 18+ natively; lower opsets need a "
        "down-conversion that fails for models with Pad (the CIFAR ResNets).",
    )
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 64],
        min_length=1,
        description="Latency batch sizes: batch 1 and a throughput batch (the largest); "
        "timed and reported in increasing order.",
        json_schema_extra={"uniqueItems": True},
    )
    max_abs_diff: float = Field(
        1e-4, gt=0.0, description="fp32 parity: largest |logit difference| vs PyTorch."
    )
    min_agreement: float = Field(
        99.9, ge=0.0, le=100.0, description="fp32 parity: top-1 agreement with PyTorch (%)."
    )
    fp16_min_agreement: float = Field(
        99.0,
        ge=0.0,
        le=100.0,
        description="fp16 parity: top-1 agreement (%); fp16 logits are not judged elementwise.",
    )
    int8_min_agreement: float = Field(
        98.0, ge=0.0, le=100.0, description="int8 parity (a quantised ONNX file): agreement (%)."
    )
    int8: Int8Config = Field(default_factory=Int8Config)
    # Bounded so that a slip (an extra digit or ten) is refused, not an export that never
    # ends or a timings array numpy cannot make.
    warmup_runs: int = Field(
        10, ge=0, le=MAX_RUNS, description="Untimed runs before each latency measurement."
    )
    timed_runs: int = Field(
        50, ge=1, le=MAX_RUNS, description="Timed runs per model, backend and batch size."
    )

    @field_validator("batch_sizes")
    @classmethod
    def _each_batch_size_once(cls, sizes: list[int]) -> list[int]:
        # The reports key latencies by batch size: a repeated size would be timed twice and
        # shown as two columns, yet stored once.
        repeated = sorted({size for size in sizes if sizes.count(size) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(map(str, repeated))} more than once")
        return sizes


class GateConfig(Strict):
    max_drop: float = Field(
        1.0,
        ge=0.0,
        description="Student may trail the teacher by (points).",
        json_schema_extra={"maximum": 100.0},
    )
    max_export_drop: float = Field(
        0.5,
        ge=0.0,
        description="Exported vs PyTorch (points).",
        json_schema_extra={"maximum": 100.0},
    )
    min_agreement: float = Field(99.5, ge=0.0, le=100.0, description="Top-1 agreement (%).")
    min_speedup: float | None = Field(None, gt=0.0)

    @field_validator("max_drop", "max_export_drop")
    @classmethod
    def _points_of_top1(cls, value: float, info: ValidationInfo) -> float:
        """Points of top-1, so at most 100: a larger bar is no bar (1e300 was refused for
        float32's sake, which says nothing to a gate). A started run's recipe is read as
        written: this check came later, and such a run must still export and gate."""
        if value > 100 and not started(info):
            raise ValueError(f"{value:g} points is more than top-1 can drop; give at most 100")
        return value


# The validator of OutputConfig.name refuses more than the pattern; this says so to editors
# (their maxLength counts characters, not bytes: a name in another script can pass it and
# still be refused). The schema's pattern admits every character past ASCII: editors match
# patterns as JavaScript does, where \w is ASCII alone and would flag a name the CLI takes
# ("résumé").
_RunName = Annotated[
    str,
    Field(
        pattern=_RUN_NAME_PATTERN,
        json_schema_extra={
            "pattern": r"^[\w.\u0080-\uffff-]+$",
            "not": {"pattern": r"^\.+$"},
            "maxLength": MAX_RUN_NAME_BYTES,
        },
    ),
]


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot name a run's folder on every system, or None. A run moves between
    machines: runs/CON is the console on Windows, and a trailing dot is dropped there; and a
    name this system's file-name encoding cannot hold (a C locale without UTF-8 mode) crashed
    the run as it made its folder, after validate had said valid."""
    encoding = sys.getfilesystemencoding()
    try:
        name.encode(encoding, sys.getfilesystemencodeerrors())
    except UnicodeEncodeError:
        return (
            f"cannot name a folder in this system's file-name encoding ({encoding}); use "
            "ASCII letters and digits, or run Python in UTF-8 mode (PYTHONUTF8=1)"
        )
    if name.split(".")[0].upper() in _WINDOWS_DEVICE_NAMES or name.endswith("."):
        return (
            "cannot name a folder on Windows (a device name such as CON or NUL, or a trailing "
            "'.'); choose another name"
        )
    return None


class OutputConfig(Strict):
    dir: OutputPath = Field(
        Path("runs"), description="Parent of run directories, relative to the working directory."
    )
    name: _RunName | None = Field(None, description="Run name; default: the recipe file name.")

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_on_every_system(
        cls, name: str | None, info: ValidationInfo
    ) -> str | None:
        """Checks that came after runs were made: a started run keeps its name."""
        if name is None or started(info) or set(name) == {"."}:  # the next check's
            return name
        problem = run_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_of_its_own(cls, name: str | None) -> str | None:
        # "." and ".." pass the pattern but name output.dir itself or its parent: the run's
        # files would land among the user's own.
        if name is not None and set(name) == {"."}:
            raise ValueError(
                "names output.dir or its parent, not a folder of its own; name the run"
            )
        size = 0 if name is None else len(name.encode())
        if size > MAX_RUN_NAME_BYTES:
            raise ValueError(
                f"is {size} bytes long; a folder name holds {MAX_NAME_BYTES}, and --overwrite "
                f"adds '.replaced': keep it to {MAX_RUN_NAME_BYTES}"
            )
        return name


class Recipe(Strict):
    teacher: TeacherConfig | None = None
    student: StudentConfig
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=CEMethod)
    train: TrainConfig = Field(default_factory=TrainConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
