"""The recipe: one YAML file that drives distillation, export and the gate.

These pydantic models are the single source of defaults and validation. Every model forbids
unknown keys, so a typo is an error instead of a silently ignored setting. Methods form a
discriminated union on `name`, so each method validates only the options it understands.

Paths in a recipe may use `${VAR}` or `${VAR:-default}` and `~`. A relative input path (data,
checkpoints) is read from the folder of whoever wrote its start: a path the recipe writes,
including a `:-default` used because VAR is unset, from the recipe's folder, so a recipe finds
its inputs from any working directory; a path that starts with a set variable's value from the
working directory, as the shell that set it would. `output.dir` is relative to the working
directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from compressor.errors import UserError

DATA_ROOT_ENV = "COMPRESSOR_DATA_ROOT"
_ENTRYPOINT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
_DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
_RUN_NAME_PATTERN = r"^[\w.-]+$"
# What each pattern means, for error messages: a regular expression is not an explanation.
_PATTERN_HELP = {
    _ENTRYPOINT_PATTERN: "expected 'module:function', e.g. my_models.zoo:build_teacher",
    _DEVICE_PATTERN: "expected auto, cpu, mps, cuda or cuda:N",
    _RUN_NAME_PATTERN: "use letters, digits, '_', '-' and '.' only (it names a folder)",
}
_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class PathSource:
    """How a recipe path came about, so an error about a missing file can say what to change:
    the variable that gave it, or the folder a relative path was read from."""

    expanded: str  # after ${...} and ~
    variable: str | None = None  # the set variable whose value starts the path
    value: str = ""  # that variable's value
    unset: tuple[str, ...] = ()  # variables whose `:-default` stood in
    folder: Literal["recipe", "working"] | None = None  # a relative path's base; None: absolute

    def note(self) -> str:
        """E.g. 'from $COMPRESSOR_DATA_ROOT=mydata, read from the working folder'; '' for an
        absolute path written in the recipe, which needs no explaining."""
        if self.variable:
            where = f"from ${self.variable}={self.value}"
            where += ", read from the working folder" if self.folder else ""
        elif self.folder == "recipe":
            where = f"{self.expanded!r} read from the recipe's folder"
        else:
            where = "read from the working folder" if self.folder else ""
        unset = [f"${name} is not set" for name in self.unset]
        return "; ".join(part for part in (where, *unset) if part)


def _expand(text: str) -> PathSource:
    """Expand `${VAR}`, `${VAR:-default}` and `~`; an unset variable with no default is an error."""
    leading: list[tuple[str, str]] = []
    unset: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        value = os.environ.get(match["name"])
        if value:
            if match.start() == 0:
                leading.append((match["name"], value))
            return value
        if match["default"] is not None:
            unset.append(match["name"])
            return match["default"]
        raise ValueError(f"environment variable {match['name']} is not set (use ${{VAR:-default}})")

    expanded = os.path.expanduser(_ENV_PATTERN.sub(substitute, text))
    variable, value = leading[0] if leading else (None, "")
    return PathSource(expanded, variable, value, tuple(unset))


def read_user_path(text: str, base_dir: Path | None) -> tuple[Path, PathSource]:
    """The input path `text` names, by the module docstring's rule, and how it came about."""
    source = _expand(text)
    path = Path(source.expanded)
    if path.is_absolute():
        return path, source
    if source.variable is not None:
        # Absolute now: the run's recipe.yaml is read again from the run directory (by export
        # and --resume), where a relative path would point somewhere else.
        return Path(os.path.abspath(path)), replace(source, folder="working")
    if base_dir is None:
        return path, replace(source, folder="working")
    # normpath: recipes/../data → data
    return Path(os.path.normpath(base_dir / path)), replace(source, folder="recipe")


def _to_path(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str | Path):
        return value
    return read_user_path(str(value), (info.context or {}).get("base_dir"))[0]


def _to_output_path(value: Any) -> Any:
    return Path(_expand(str(value)).expanded) if isinstance(value, str | Path) else value


UserPath = Annotated[Path, BeforeValidator(_to_path)]
# Outputs are relative to the working directory, like every CLI's output flag: `runs/` lands
# where the user runs the command, not beside a recipe that may sit in a read-only checkout.
OutputPath = Annotated[Path, BeforeValidator(_to_output_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _no_true_or_false_for_a_number(cls, data: Any) -> Any:
        """pydantic reads `epochs: true` as 1 and `lr: false` as 0.0; in a recipe that is a
        slip (a flag's value in a number's place), so it is an error. (A model validator: a
        field validator may not touch a method's `name`, the union's discriminator.)"""
        if isinstance(data, dict):
            flagged = {
                key: _TrueOrFalse(value, _takes_words(cls.model_fields[key].annotation))
                for key, value in data.items()
                if isinstance(value, bool)
                and key in cls.model_fields
                and not _admits_bool(cls.model_fields[key].annotation)
            }
            if flagged:
                # The field's own validation then refuses it, with its path and its type.
                return {**data, **flagged}
        return data


class _TrueOrFalse:
    """A YAML true/false where a field wants no bool: no field type accepts it."""

    def __init__(self, value: bool, words: bool) -> None:
        self.value = value
        self.words = words  # the field takes words such as off: say how YAML read one

    def __repr__(self) -> str:
        text = str(self.value).lower()
        if self.words:
            text += "; YAML reads an unquoted on/off/yes/no as true/false: quote the word"
        return text


def _takes_words(annotation: Any) -> bool:
    """Is the field (or a member of its union) a Literal of strings, like amp's 'off'?"""
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, str) for choice in get_args(annotation))
    return any(_takes_words(argument) for argument in get_args(annotation))


def _admits_bool(annotation: Any) -> bool:
    """Does a field's type take true/false: bool itself, Any, or a union or Literal with it?"""
    if annotation is bool or annotation is Any or isinstance(annotation, bool):
        return True
    return any(_admits_bool(argument) for argument in get_args(annotation))


class _WithInputPaths(Strict):
    """A section with input paths (UserPath fields), which remembers how each came about so
    that an error about one can name the variable or folder it was read from."""

    _path_sources: dict[str, PathSource] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_path_sources(
        cls, data: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        section = handler(data)
        if isinstance(data, dict):
            base_dir = (info.context or {}).get("base_dir")
            for name, value in data.items():
                if isinstance(value, str | Path) and isinstance(getattr(section, name), Path):
                    section._path_sources[name] = read_user_path(str(value), base_dir)[1]
        return section

    def __eq__(self, other: object) -> bool:
        """Equal by value: how a path was written (for messages) is not part of what a recipe
        asks for. pydantic would compare the private record too, and a run's recipe.yaml
        (absolute paths) would never equal the recipe that started it (relative ones), so
        --resume and quickstart would refuse the very recipe that made the run."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, as pydantic models are

    def path_source(self, field: str) -> PathSource | None:
        """How `field` was written; None when it was given as a Path or is unset."""
        return self._path_sources.get(field)

    def path_note(self, field: str) -> str:
        """' (from $VAR=value, read from the working folder)' and the like, or ''."""
        source = self.path_source(field)
        note = source.note() if source else ""
        return f" ({note})" if note else ""


class TeacherConfig(_WithInputPaths):
    """Where the teacher comes from. See docs: zoo name, `module:callable`, TorchScript, .pt2."""

    arch: str | None = Field(None, description="Model zoo or torchvision name, e.g. resnet56.")
    entrypoint: str | None = Field(
        None,
        pattern=_ENTRYPOINT_PATTERN,
        description="'package.module:callable' returning an nn.Module; imported only when set.",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments.")
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
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments.")

    @model_validator(mode="after")
    def _kwargs_leave_the_data_set_alone(self) -> StudentConfig:
        _no_data_set_arguments(self.kwargs, "student")
        return self


DatasetName = Literal["digits", "cifar10", "cifar100", "tiny_imagenet", "imagefolder"]


# The data sets `data.download` fetches (compressor/data/cifar.py).
_DOWNLOADABLE = ("cifar10", "cifar100")


class DataConfig(_WithInputPaths):
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
    mean: tuple[float, ...] | None = Field(None, description="Per-channel mean on [0, 1] pixels.")
    std: tuple[float, ...] | None = Field(None, description="Per-channel std on [0, 1] pixels.")
    crop_padding: int | None = Field(None, ge=0, le=64, description="Random-crop padding.")
    flip: bool | None = Field(None, description="Random horizontal flip; default per data set.")
    max_train_samples: int | None = Field(None, ge=1, description="Class-balanced subset.")
    max_test_samples: int | None = Field(None, ge=1, description="Class-balanced subset.")

    @model_validator(mode="after")
    def _root_and_stats(self) -> DataConfig:
        if self.root is None and self.name != "digits" and os.environ.get(DATA_ROOT_ENV):
            # As if the recipe said `root: ${COMPRESSOR_DATA_ROOT}`.
            self.root, self._path_sources["root"] = read_user_path(f"${{{DATA_ROOT_ENV}}}", None)
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError("mean and std need one value per channel each")
            if any(s <= 0 for s in self.std):
                raise ValueError("std values must be > 0")
        return self

    @model_validator(mode="after")
    def _no_setting_the_data_set_ignores(self, info: ValidationInfo) -> DataConfig:
        """A root or a download the data set would ignore is an error: the user believes the
        data comes from there."""
        if _started(info):
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


class AttackConfig(Strict):
    """Boundary-supporting sample search (BSS, Heo et al. 2019)."""

    fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="Attacked share of each batch (BSS: 64 per 256)."
    )
    step_size: float = Field(0.3, gt=0.0, description="eta in the BSS update.")
    epsilon: float = Field(1e-4, ge=0.0, description="Pushes slightly past the boundary.")
    max_steps: int = Field(10, ge=1, le=100, description="Gradient search: attack updates.")
    keep: Literal["all", "boundary"] = Field(
        "all", description="'all' uses every result (reference); 'boundary' only (b, k) hits."
    )
    search: Literal["gradient", "interpolation"] = Field(
        "gradient",
        description="'gradient': the BSS attack along the teacher's input gradient (reference); "
        "'interpolation': bisect the segment from the base image to a batch image of class k "
        "for the teacher's b/k crossing (no input gradients; docs/METHOD.md).",
    )
    halvings: int = Field(
        8,
        ge=1,
        le=24,
        description="Interpolation search: bisection steps; the sample lies within 2^-halvings "
        "of the segment past the crossing (float32 resolves no finer than about 2^-24).",
    )


# How the student's BatchNorm layers treat the boundary samples (compressor.methods.boundary_norm).
BoundaryNorm = Literal["update", "batch", "running"]
BOUNDARY_NORM_HELP = (
    "Student BatchNorm on the boundary samples: 'update' (BSS reference) normalises by their "
    "batch and folds it into the running statistics; 'batch' leaves the running statistics to "
    "clean batches; 'running' normalises by the running statistics, as the deployed student does."
)


class ScheduleWeights(Strict):
    """alpha(e) = 1 + alpha_extra * max(1 - e/E, 0); beta(e) = beta_init * max(1 - e/(f E), 0)."""

    alpha_extra: float = Field(3.0, ge=0.0)
    beta_init: float = Field(2.0, ge=0.0)
    beta_stop_fraction: float = Field(0.75, gt=0.0, le=1.0)


class AMKDWeights(ScheduleWeights):
    """AMKD's schedule: a constant clean-KD weight (its clean term is plain KD), beta from 1.

    Own defaults rather than BSS's, so a recipe that sets one field keeps AMKD's others.
    """

    alpha_extra: float = Field(0.0, ge=0.0)
    beta_init: float = Field(1.0, ge=0.0)


class CEMethod(Strict):
    name: Literal["ce"] = "ce"


class KDMethod(Strict):
    name: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0.0)
    ce_weight: float = Field(1.0, ge=0.0)
    kd_weight: float = Field(1.0, ge=0.0)


class BSSMethod(Strict):
    name: Literal["bss"] = "bss"
    temperature: float = Field(3.0, gt=0.0)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    weights: ScheduleWeights = Field(default_factory=ScheduleWeights)
    bank_epochs: int = Field(
        1,
        ge=1,
        description="Reuse each boundary sample for this many epochs: attack in the first of "
        "each window, reuse the banked samples in the rest (1: attack every step).",
    )
    boundary_norm: BoundaryNorm = Field("update", description=BOUNDARY_NORM_HELP)


class TripletMethod(Strict):
    name: Literal["triplet"] = "triplet"
    temperature: float = Field(1.0, gt=0.0, description="Oki et al. use plain KL (T = 1).")
    margin: float = Field(5.0, ge=0.0)
    triplet_weight: float = Field(2.0, ge=0.0)


class AMKDMethod(Strict):
    name: Literal["amkd"] = "amkd"
    temperature: float = Field(4.0, gt=0.0)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    weights: AMKDWeights = Field(default_factory=AMKDWeights)
    bank_epochs: int = Field(
        1,
        ge=1,
        description="Reuse each boundary sample for this many epochs: attack in the first of "
        "each window, reuse the banked samples in the rest (1: attack every step).",
    )
    boundary_norm: BoundaryNorm = Field("batch", description=BOUNDARY_NORM_HELP)
    embedding: Literal["logits", "softmax", "features"] = "softmax"
    negative_source: Literal["teacher", "student"] = "teacher"
    mining: Literal["random", "hardest"] = "random"
    lambda_bss: float = Field(
        0.0, ge=0.0, description="Weight of BSS's KD term on x~; 0: the triplet replaces it."
    )
    gamma: float = Field(8.0, ge=0.0, description="Weight of the triplet term.")
    margin: float = Field(
        0.2, ge=0.0, description="Triplet margin, in the embedding's units (softmax: <= sqrt 2)."
    )
    t_squared: bool = Field(
        True,
        description="Scale both KL terms by T^2 as Hinton's KD does (the BSS reference does "
        "not), so the clean term is as strong as plain KD's.",
    )
    project_conflicts: bool = Field(
        False,
        description="On steps where the boundary term's gradient points against the clean "
        "term's, drop its component along the clean gradient (PCGrad), so it cannot slow the "
        "clean fit; costs two more backward passes per attack step. Not under torchrun.",
    )


MethodConfig = Annotated[
    CEMethod | KDMethod | BSSMethod | TripletMethod | AMKDMethod, Field(discriminator="name")
]
METHOD_MODELS: dict[str, type[Strict]] = {
    "ce": CEMethod,
    "kd": KDMethod,
    "bss": BSSMethod,
    "triplet": TripletMethod,
    "amkd": AMKDMethod,
}
METHOD_NAMES = tuple(METHOD_MODELS)


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
        if _started(info):
            return self
        if self.name == "adamw" and (self.nesterov or self.momentum != _SGD_MOMENTUM):
            raise ValueError(
                "adamw takes no momentum or nesterov (they are SGD's); remove them or use sgd"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


_SGD_MOMENTUM = OptimizerConfig.model_fields["momentum"].default


def _started(info: ValidationInfo) -> bool:
    """Is this the recipe of a run that has started (its recipe.yaml, or the recipe it is
    resumed with)? Checks for settings that would be ignored came after some runs were made;
    such a run must still resume, export and gate, so it is read as it was written."""
    return bool(info.context and info.context.get("started"))


class ScheduleConfig(Strict):
    name: Literal["multistep", "cosine", "constant"] = "cosine"
    milestones: list[int] = Field(default_factory=list, description="Epochs (multistep).")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _sorted_milestones(self, info: ValidationInfo) -> ScheduleConfig:
        if self.milestones != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError("milestones must be increasing epoch numbers >= 1")
        if _started(info):
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
        return self


_MULTISTEP_GAMMA = ScheduleConfig.model_fields["gamma"].default


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
    seed: int = Field(0, ge=0)
    deterministic: bool = Field(False, description="Deterministic kernels (slower).")
    device: str = Field("auto", pattern=_DEVICE_PATTERN)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool | None = Field(None, description="Default: on for CUDA and CPU.")
    compile: bool = False
    num_threads: int | None = Field(None, ge=1, description="CPU threads; default: torch's.")

    @model_validator(mode="after")
    def _milestones_within(self, info: ValidationInfo) -> TrainConfig:
        # Epoch e (from 0) trains at the lr of milestones <= e: one at `epochs` never applies.
        # (A run started before this was checked has milestones <= epochs.)
        if _started(info) and any(m > self.epochs for m in self.schedule.milestones):
            raise ValueError(f"schedule milestones must be <= epochs ({self.epochs})")
        if not _started(info) and any(m >= self.epochs for m in self.schedule.milestones):
            raise ValueError(
                f"schedule milestones must be < epochs ({self.epochs}); a milestone at or past "
                "the last epoch never applies"
            )
        if (
            self.schedule.warmup_epochs >= self.epochs
            and self.schedule.warmup_epochs
            and (self.epochs > 1 or not _started(info))
        ):
            raise ValueError(
                f"schedule.warmup_epochs must be smaller than epochs ({self.epochs}): the run "
                "would end before the lr reaches its set value"
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
    seed: int = Field(0, ge=0, description="Which training images are drawn for calibration.")


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
        description="Latency batch sizes: batch 1 and a throughput batch.",
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
    warmup_runs: int = Field(10, ge=0, description="Untimed runs before each latency measurement.")
    timed_runs: int = Field(50, ge=1, description="Timed runs per model, backend and batch size.")

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
    max_drop: float = Field(1.0, ge=0.0, description="Student may trail the teacher by (points).")
    max_export_drop: float = Field(0.5, ge=0.0, description="Exported vs PyTorch (points).")
    min_agreement: float = Field(99.5, ge=0.0, le=100.0, description="Top-1 agreement (%).")
    min_speedup: float | None = Field(None, gt=0.0)


class OutputConfig(Strict):
    dir: OutputPath = Field(
        Path("runs"), description="Parent of run directories, relative to the working directory."
    )
    name: str | None = Field(
        None, pattern=_RUN_NAME_PATTERN, description="Run name; default: the recipe file name."
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_of_its_own(cls, name: str | None) -> str | None:
        # "." and ".." pass the pattern but name output.dir itself or its parent: the run's
        # files would land among the user's own.
        if name is not None and set(name) == {"."}:
            raise ValueError(
                "names output.dir or its parent, not a folder of its own; name the run"
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


class _SchemaWithListDefaults(GenerateJsonSchema):
    """pydantic leaves out defaults made by a factory; a list or mapping default (export
    batch sizes, milestones, kwargs) is as much a default as a number, so editors show it too.
    Section defaults (whole models) stay out: each of their fields shows its own."""

    def default_schema(self, schema: Any) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()
            if isinstance(value, (list, dict)):
                schema = {key: item for key, item in schema.items() if key != "default_factory"}
                schema["default"] = value
        return super().default_schema(schema)


def recipe_schema() -> dict[str, Any]:
    """JSON Schema of the recipe, for editors (yaml-language-server) and docs."""
    schema = Recipe.model_json_schema(schema_generator=_SchemaWithListDefaults)
    schema["title"] = "compressor recipe"
    # Which method a recipe without `method:` trains is the one section default that is a
    # choice, not a set of field defaults: say it.
    schema["properties"]["method"]["default"] = {"name": CEMethod().name}
    return schema


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # A discriminated union inserts the tag ("method", "amkd", ...): the user never wrote it.
    if len(parts) >= 2 and parts[0] == "method" and parts[1] in METHOD_NAMES:
        del parts[1]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Walk the recipe models along `loc` to list the keys the user could have meant."""
    model: Any = Recipe
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if model is Recipe and part == "method" and parts:
            model = METHOD_MODELS.get(str(parts.pop(0)))
            continue
        field = model.model_fields.get(str(part)) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    return sorted(model.model_fields) if _is_model(model) else []


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _model_in(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required, but missing"
    if kind in ("model_type", "model_attributes_type"):  # not pydantic's class names
        return f"expected a section of keys, not {_yaml_kind(error['input'])}"
    if kind == "union_tag_invalid":
        return f"unknown method {error['input'].get('name')!r}; allowed: {', '.join(METHOD_NAMES)}"
    if kind == "union_tag_not_found":
        return f"needs a 'name' key; allowed: {', '.join(METHOD_NAMES)}"
    if kind == "string_pattern_mismatch":
        expected = _PATTERN_HELP.get(error["ctx"]["pattern"], error["msg"])
        return f"{expected} (got {error['input']!r})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "tuple_type":  # YAML has lists; a fixed-length field is a tuple to pydantic
        message = "Input should be a list"
    if "input" in error and not isinstance(error["input"], dict):
        return f"{message} (got {error['input']!r})"
    return message


def format_validation_error(source: str, error: ValidationError) -> list[str]:
    """One line per problem: file, field path, what is wrong and what is allowed."""
    return [f"{source}: {_field_path(e['loc'])}: {_describe(e)}" for e in error.errors()]


def parse_recipe(
    data: Any, source: str = "<recipe>", base_dir: Path | None = None, *, started: bool = False
) -> Recipe:
    """Validate a recipe mapping; raise UserError with one line per schema problem.
    `started`: the recipe of a run that has started (see `_started`)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(
            f"{source}: the recipe must be a YAML mapping of sections (student:, data:, ...), "
            f"not {_yaml_kind(data)}"
        )
    try:
        return Recipe.model_validate(data, context={"base_dir": base_dir, "started": started})
    except ValidationError as error:
        raise UserError(*format_validation_error(source, error)) from None


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last,
    so a second `train:` section would silently drop every setting of the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"{key!r} is given twice in one section; keep one",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: Path | str, *, started: bool = False) -> Recipe:
    """Read a recipe file with a safe YAML loader (yaml.SafeLoader, duplicate keys refused)
    and validate its schema. `started`: a run's recipe.yaml, or the recipe resuming it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a recipe file (name the .yaml file in it)")
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found (check the path)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        # A ReaderError (a control character) has a reason, not a problem.
        problem = getattr(error, "problem", None) or getattr(error, "reason", None) or error
        raise UserError(f"{path}:{where} not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; a recipe is UTF-8 YAML") from None
    return parse_recipe(data, source=str(path), base_dir=path.resolve().parent, started=started)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe (defaults filled in, paths absolute) as YAML."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def recipe_differences(before: Recipe, after: Recipe) -> list[str]:
    """Each setting that differs, as `field.path: old → new`, in recipe order.

    Resuming refuses a changed recipe; naming the fields tells the user what to put back
    instead of leaving them to diff two YAML files by eye.
    """
    differences: list[str] = []

    def walk(old: Any, new: Any, path: str) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for key in [*old, *(key for key in new if key not in old)]:
                walk(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        elif old != new:
            differences.append(f"{path}: {_setting_text(old)} → {_setting_text(new)}")

    walk(before.model_dump(mode="json"), after.model_dump(mode="json"), "")
    return differences


def _setting_text(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, ensure_ascii=False)
