"""Reading weights files safely and loading them strictly, with errors a user can act on.

Checkpoints arrive in many shapes: wrapped in `{"state_dict": ...}` or `{"model": ...}`,
saved from `nn.DataParallel` (`module.` prefixes) or `torch.compile` (`_orig_mod.`), saved on
a GPU, sometimes with pickled Python objects inside. Everything here turns those into a plain
`{name: tensor}` dict on the CPU, or into a UserError that names the file and the fix.
"""

from __future__ import annotations

import io
import itertools
import pickle
import pickletools
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from compressor.errors import ChannelsDiffer, UserError, short_reason
from compressor.models.registry import create_model, list_models

FileFormat = Literal["state_dict", "torchscript", "export"]

# Keys under which training scripts commonly nest the weights, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "student")
# Added by nn.DataParallel / DistributedDataParallel and by torch.compile, in any nesting.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PREVIEW = 5  # keys or shapes shown per problem; the counts say how many more there are


def detect_format(path: Path) -> FileFormat:
    """What `format: auto` resolves to: `.pt2` or a torch.export archive, TorchScript, else weights.

    Archive layouts as written by torch 2.14 (one top-level folder named after the file):
    torch.export.save → `<stem>/archive_format` (contains "pt2"), `<stem>/models/model.json`;
    torch.jit.save → `<stem>/code/__torch__/...`, `<stem>/constants.pkl`;
    torch.save → `<stem>/data.pkl`, `<stem>/data/0...` (the old format is not a zip).
    """
    if path.suffix == ".pt2":
        return "export"
    return _archive_kind(path)


def _archive_kind(path: Path) -> FileFormat:
    if not zipfile.is_zipfile(path):
        return "state_dict"
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError):
        return "state_dict"  # torch.load then reports the damage with the file's name
    if "archive_format" in names:
        return "export"
    if "constants.pkl" in names or any(name.startswith("code/") for name in names):
        return "torchscript"
    return "state_dict"


@dataclass(frozen=True)
class RecordedInputs:
    """What a student.pt that compress wrote records of the data it was trained on."""

    image_shape: list[int]
    mean: list[float]
    std: list[float]
    classes: list[str] | None  # None where the file does not record them


def recorded_inputs(path: Path) -> RecordedInputs | None:
    """The image shape, mean/std and class names a student.pt that compress wrote records (its
    training data's), read lazily (mmap: the weights stay on disk); None for any other file."""
    if not zipfile.is_zipfile(path) or _archive_kind(path) != "state_dict":
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # loading the teacher proper says what is wrong with the file
        return None
    if not isinstance(record, dict) or "state_dict" not in record:
        return None
    image_shape, mean, std = (record.get(key) for key in ("image_shape", "mean", "std"))
    if not (_numbers(image_shape) and _numbers(mean) and _numbers(std)):
        return None
    classes = record.get("classes")
    named = isinstance(classes, list) and all(isinstance(name, str) for name in classes)
    return RecordedInputs(image_shape, mean, std, classes=classes if named else None)


def _numbers(value: object) -> TypeGuard[list[Any]]:
    return isinstance(value, list) and all(isinstance(x, int | float) for x in value)


def check_file(path: Path) -> None:
    """Fail early, with the path, on the two mistakes torch reports least clearly."""
    if not path.exists():
        raise UserError(f"{path}: file not found (check the path)")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; expected a checkpoint file")


def read_checkpoint(
    path: Path | str,
    trust_pickle: bool = False,
    if_pickled: str = "if you trust this file set teacher.trust_pickle: true",
) -> Any:
    """`torch.load` on the CPU, refusing pickled code unless the user trusts the file.

    `weights_only=True` restricts unpickling to tensors and plain containers, so a crafted
    file cannot run code while we read it. With `trust_pickle` the full unpickler runs.
    `if_pickled` is the way out that a refusal offers: only a teacher can be trusted.
    """
    path = Path(path)
    check_file(path)
    kind = _archive_kind(path)
    if kind != "state_dict":
        name = "TorchScript" if kind == "torchscript" else "torch.export"
        raise UserError(
            f"{path}: is a {name} program, not a checkpoint of weights; "
            f"load it with teacher.format: auto (or {kind})"
        )
    try:
        with warnings.catch_warnings():
            # Plain pickle files (protocol > 2) make torch warn before it refuses them; the
            # refusal below says what matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # Sparse tensors make torch warn of its invariant scan; they are then refused in
            # one line (tensor_problem), which the warning would only precede.
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        if not trust_pickle and _carries_objects(path):
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            what = f" ({found[1]})" if found else ""
            raise UserError(
                f"{path} contains pickled Python objects{what} that could run code when loaded; "
                + if_pickled
            ) from None
        raise UserError(_unreadable(path, error)) from None
    except (ModuleNotFoundError, AttributeError) as error:
        if not trust_pickle:
            raise UserError(_unreadable(path, error)) from None
        # Only the full unpickler imports classes: the file pickles a model object whose code
        # is not importable here.
        raise UserError(
            f"{path}: the pickled objects need Python code that is not importable here "
            f"({error}); save model.state_dict() instead, or make that module importable"
        ) from None
    except Exception as error:
        raise UserError(_unreadable(path, error)) from None


def _carries_objects(path: Path) -> bool:
    """Is this weights-only refusal about objects in a valid pickle, or about a broken file?

    torch's refusal cannot tell: a pickle of protocol 4+ (`pickle.dump`,
    `torch.save(..., pickle_protocol=4)`) is refused for its first opcode, just like random
    bytes are, and a damaged file whose first byte happens to be the GLOBAL opcode is refused
    as "Unsupported global", just like a pickled model. Parsing the opcodes to the end (nothing
    is executed) tells them apart.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                pickletools.dis(archive.read(member), out=io.StringIO())
        else:
            with path.open("rb") as stream:
                pickletools.dis(stream, out=io.StringIO())
    except Exception:
        return False
    # A plain pickle.dump file is a valid pickle too, but torch.load cannot read it even
    # trusted: asking the user to trust it would lower their guard for nothing.
    return zipfile.is_zipfile(path) or _starts_like_torch_save(path)


def _starts_like_torch_save(path: Path) -> bool:
    """torch.save's legacy (non-zip) format opens with a pickled magic number; reading that
    one integer runs nothing (no class may be looked up)."""

    class _NoGlobals(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise pickle.UnpicklingError(f"global {module}.{name}")

    try:
        with path.open("rb") as stream:
            return _NoGlobals(stream).load() == torch.serialization.MAGIC_NUMBER
    except Exception:
        return False


def _unreadable(path: Path, error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:  # the system's refusal, not the file
        return f"{path}: cannot read it ({error.strerror}); make it readable by this user"
    message = (
        f"{path}: cannot read this file as a PyTorch checkpoint; it is truncated, corrupt "
        "or not written by torch.save"
    )
    if isinstance(error, pickle.UnpicklingError) and "Weights only" in str(error):
        return message  # torch's text would suggest weights_only=False, which cannot help
    return f"{message} ({short_reason(error)})"


def read_state_dict(path: Path | str, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The `{name: tensor}` weights in a checkpoint file, unwrapped and prefix-free, on the CPU."""
    return extract_state_dict(read_checkpoint(path, trust_pickle), str(path))


def find_module(checkpoint: Any) -> nn.Module | None:
    """A whole model object pickled by `torch.save(model)`, directly or under a wrapper key."""
    for _ in range(len(WRAPPER_KEYS)):
        if isinstance(checkpoint, nn.Module):
            return checkpoint
        key = _wrapper_key(checkpoint)
        if key is None:
            return None
        checkpoint = checkpoint[key]
    return None


def extract_state_dict(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """Unwrap `{"state_dict": ...}`-style nesting or a model object; strip wrapper prefixes."""
    under: list[str] = []
    for _ in range(len(WRAPPER_KEYS) + 1):
        if isinstance(checkpoint, nn.Module):
            checkpoint = checkpoint.state_dict()
        if _is_state_dict(checkpoint):
            return strip_prefixes(checkpoint)
        key = _wrapper_key(checkpoint)
        if key is None:
            break
        under.append(key)
        checkpoint = checkpoint[key]
    if isinstance(checkpoint, Mapping):
        keys = ", ".join(map(str, list(checkpoint)[:10]))
        found = f"a dict with keys: {keys}" if keys else "an empty dict"
    else:
        found = f"a {type(checkpoint).__name__}"
    if under:  # {"state_dict": {}}: the empty dict is the one under the key
        found += f" under {'/'.join(under)}"
    raise UserError(
        f"{source}: no weights found; expected a state dict (names → tensors), possibly under "
        f"one of {', '.join(WRAPPER_KEYS)}, but the file holds {found}"
    )


def _is_state_dict(candidate: Any) -> bool:
    return (
        isinstance(candidate, Mapping)
        and len(candidate) > 0
        and all(isinstance(key, str) for key in candidate)
        and all(isinstance(value, torch.Tensor) for value in candidate.values())
    )


def _wrapper_key(candidate: Any) -> str | None:
    """The first wrapper key that holds weights or a model: `{"model": "resnet8", "net":
    {...}}` names the architecture under "model" and keeps the weights under "net"."""
    if not isinstance(candidate, Mapping):
        return None
    present = [key for key in WRAPPER_KEYS if key in candidate]
    holding = (key for key in present if isinstance(candidate[key], Mapping | nn.Module))
    return next(holding, present[0] if present else None)


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove `module.` / `_orig_mod.` while every key carries one (DDP of compile and back).

    Returns a copy; the per-module version `_metadata` moves along, so layers that convert old
    checkpoints by version (batch norm's `num_batches_tracked`) still do.
    """
    stripped: OrderedDict[str, torch.Tensor] = OrderedDict(state_dict)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        stripped._metadata = OrderedDict(metadata)  # type: ignore[attr-defined]
    while prefix := next(
        (p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in stripped)), None
    ):
        consume_prefix_in_state_dict_if_present(stripped, prefix)
    return stripped


def load_weights(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    model_name: str,
    data_classes: int,
    data_channels: int | None = None,
    arch_field: str = "arch",
) -> None:
    """Strict `load_state_dict`, but every mismatch is reported at once in readable lines.

    `model_name` names the architecture in messages ("resnet56"); `arch_field` is the recipe
    field to point at ("teacher.arch"); `data_classes` and `data_channels` are the data set's
    class and channel counts, which the model's head and stem need not have (an entrypoint
    builds what it builds; None: the model's stem is the data's). A missing
    `num_batches_tracked` is accepted: old checkpoints (like the akamaster ResNets) predate
    it and batch norm fills it in.
    """
    expected = model.state_dict()
    state_dict = _fit_outer_name(state_dict, expected)
    missing = [k for k in expected if k not in state_dict and not _is_counter(k)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    unusable = {
        k: problem
        for k in expected
        if k in state_dict and k not in mismatched
        if (problem := tensor_problem(state_dict[k], expected[k])) is not None
    }
    if missing or unexpected or mismatched or unusable:
        lines = []
        if missing or unexpected:
            # One problem, the layout (most often the wrong architecture): one line, with it.
            layout = []
            if missing:
                layout.append(
                    f"{len(missing)} weights of {model_name} are missing from the checkpoint: "
                    f"{_preview(missing)}"
                )
            if unexpected:
                layout.append(
                    f"{len(unexpected)} checkpoint weights do not exist in {model_name}: "
                    f"{_preview(unexpected)}"
                )
            hint = _arch_hint(model_name, arch_field, expected, state_dict)
            lines.append(f"{source}: {'; '.join(layout)}; {hint}")
        head = _head_prefix(expected)
        stem = _stem_key(expected)
        takes: tuple[int, int] | None = None  # (channels, line) of a stem of other images
        for key in mismatched[:_PREVIEW]:
            problem, channels = _shape_problem(
                key,
                state_dict[key],
                expected[key],
                (head, stem),
                data_classes,
                arch_field,
                data_channels,
            )
            if channels is not None:
                takes = channels, len(lines)
            lines.append(f"{source}: {problem}")
        if len(mismatched) > _PREVIEW:
            lines.append(f"{source}: ... and {len(mismatched) - _PREVIEW} more shape mismatches")
        if unusable:
            first, problem = next(iter(unusable.items()))
            more = f" (and {len(unusable) - 1} more)" if len(unusable) > 1 else ""
            lines.append(
                f"{source}: {first} is {problem}{more}; weights are dense floating-point "
                "tensors: save the float model's state_dict(), before any quantisation"
            )
        if takes is not None:
            raise ChannelsDiffer(*lines, channels=takes[0], line=takes[1])
        raise UserError(*lines)
    complete: OrderedDict[str, torch.Tensor] = OrderedDict(state_dict)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        complete._metadata = metadata  # type: ignore[attr-defined]
    for key in expected:
        complete.setdefault(key, expected[key])  # only the accepted num_batches_tracked
    model.load_state_dict(complete, strict=True)


def tensor_problem(value: torch.Tensor, expected: torch.Tensor) -> str | None:
    """What keeps `value` from being copied into the model as `expected`: load_state_dict
    fails on a sparse or meta tensor with torch's own words, and silently rounds integer or
    drops complex weights into a float model."""
    if value.layout != torch.strided:
        return f"a {str(value.layout).removeprefix('torch.')} tensor"
    if value.is_meta:
        return "a meta tensor (it holds no values)"
    if value.is_quantized:
        return f"a quantized tensor ({value.dtype})"
    if expected.is_floating_point() and not value.is_floating_point():
        return f"{str(value.dtype).removeprefix('torch.')}, not floating point"
    return None


def _is_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "num_batches_tracked"


def _fit_outer_name(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> Mapping[str, torch.Tensor]:
    """Make the keys fit the model exactly, where an outer name is all that differs: drop one
    (Lightning's `model.`), or put back a wrapper prefix `strip_prefixes` took off when the
    model's own attribute has that name (a wrapper whose inner model is its `module`: its own
    state_dict() was refused, every layer named missing)."""
    if set(state_dict) == set(expected):
        return state_dict

    def fits(keys: set[str]) -> bool:
        return keys <= set(expected) and all(_is_counter(k) for k in set(expected) - keys)

    if fits(set(state_dict)):
        return state_dict
    for depth in (1, 2):
        for prefixes in itertools.product(WRAPPER_PREFIXES, repeat=depth):
            prefix = "".join(prefixes)
            if fits({prefix + key for key in state_dict}):
                return {prefix + key: value for key, value in state_dict.items()}
    outer = {key.split(".", 1)[0] for key in state_dict}
    if len(outer) != 1 or not all("." in key for key in state_dict):
        return state_dict
    inner = {key.split(".", 1)[1]: value for key, value in state_dict.items()}
    return inner if fits(set(inner)) else state_dict


def _preview(keys: list[str]) -> str:
    more = f", ... (+{len(keys) - _PREVIEW} more)" if len(keys) > _PREVIEW else ""
    return ", ".join(keys[:_PREVIEW]) + more


def _head_prefix(expected: Mapping[str, torch.Tensor]) -> str | None:
    """The classifier: the last module with a matrix or conv weight (fc, linear, classifier.1)."""
    weights = [k for k, v in expected.items() if k.endswith(".weight") and v.dim() >= 2]
    return weights[-1].rsplit(".", 1)[0] if weights else None


def _stem_key(expected: Mapping[str, torch.Tensor]) -> str | None:
    """The first convolution's weight: the layer whose input channels are the image's."""
    return next((k for k, v in expected.items() if k.endswith(".weight") and v.dim() == 4), None)


def _shape_problem(
    key: str,
    got: torch.Tensor,
    want: torch.Tensor,
    layers: tuple[str | None, str | None],
    data_classes: int,
    arch_field: str,
    data_channels: int | None,
) -> tuple[str, int | None]:
    """The shapes; for the first convolution, when only its input channels differ, which
    count differs: the checkpoint's from the data's, or the model's (an entrypoint builds the
    stem it builds); for the classifier likewise (a builder's kwargs can set its outputs).
    Second, the checkpoint's image channels when they are what sets it apart from the data:
    data read with that many would suit it."""
    head, stem = layers
    text = f"{key}: checkpoint {list(got.shape)} vs model {list(want.shape)}"
    if key == stem and got.shape[:1] + got.shape[2:] == want.shape[:1] + want.shape[2:]:
        trained, built = got.shape[1], want.shape[1]
        if data_channels is None or built == data_channels:
            return (
                f"{text} — the checkpoint takes {trained}-channel images, the data has "
                f"{built}: it was trained on another data set; give a checkpoint trained "
                "on this one"
            ), trained
        return (
            f"{text} — the model built takes {built}-channel images, the checkpoint "
            f"{trained}; the data has {data_channels}: check {arch_field} and its kwargs"
        ), None
    in_head = head is not None and key.rsplit(".", 1)[0] == head
    if not (in_head and got.dim() == want.dim() and got.shape[1:] == want.shape[1:]):
        return text, None
    trained, built = got.shape[0], want.shape[0]
    if built == data_classes:
        return (
            f"{text} — the checkpoint was trained for {trained} classes, the data has {built}"
        ), None
    # torchvision's builders take num_classes through **kwargs, where an entrypoint's call
    # cannot see it named: it must be given.
    given = (
        f" (num_classes: {trained} in kwargs, where the function takes it through **kwargs, "
        "as torchvision's do)"
        if arch_field.endswith("entrypoint")
        else ""
    )
    return (
        f"{text} — the model built has {built} outputs, the checkpoint {trained}; the data has "
        f"{data_classes} classes: check {arch_field} and its kwargs{given}"
    ), None


def _arch_hint(
    model_name: str,
    arch_field: str,
    expected: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
) -> str:
    """Say how the layer counts differ and which zoo architectures the checkpoint does fit."""
    parts = []
    want, got = _block_ranges(expected), _block_ranges(state_dict)
    stage = next((s for s in want if s in got and want[s] != got[s]), None)
    if stage is not None:
        parts.append(
            f"{model_name} expects {stage}.0..{stage}.{want[stage]}, "
            f"the checkpoint has {stage}.0..{stage}.{got[stage]}"
        )
    fits = _zoo_fits(state_dict)
    if fits:
        parts.append(f"the checkpoint fits {', '.join(fits)}")
    detail = "; ".join(parts) if parts else "the layer names differ"
    return f"is {arch_field} right? {detail}"


def _block_ranges(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Highest block index per repeated stage: {"layer1": 8} for ResNet-56."""
    highest: dict[str, int] = {}
    for key in state_dict:
        found = re.match(r"^(.*?)\.(\d+)\.", key)
        if found:
            highest[found[1]] = max(highest.get(found[1], 0), int(found[2]))
    return highest


def _zoo_fits(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Zoo models with exactly these layers and shapes (classifier and input channels aside).

    Built on the meta device: no memory and no initialisation cost, even for WRN-28-10.
    """
    fits = []
    for name in list_models():
        with torch.device("meta"):
            candidate = create_model(name, num_classes=2).state_dict()
        keys = [k for k in candidate if not _is_counter(k)]
        if set(keys) != {k for k in state_dict if not _is_counter(k)}:
            continue
        head = _head_prefix(candidate)
        free = {keys[0]} | {k for k in keys if k.rsplit(".", 1)[0] == head}
        if all(candidate[k].shape == state_dict[k].shape for k in keys if k not in free):
            fits.append(name)
    return fits
