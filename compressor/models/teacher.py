"""Teacher loading: from a recipe's `teacher:` section to a frozen model on the CPU.

Four sources, because users bring what they have:
  zoo/torchvision `arch` + state dict · `entrypoint: package.module:callable` + state dict ·
  TorchScript file · `torch.export` program (.pt2).
The caller (the engine) moves the teacher to its device and checks its accuracy.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import types
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.errors import DEBUG_HINT, ChannelsDiffer, UserError, short_reason
from compressor.models.checkpoint import (
    check_file,
    detect_format,
    find_module,
    load_weights,
    read_checkpoint,
    read_state_dict,
)
from compressor.models.fingerprint import weights_sha256
from compressor.models.registry import create_model, kwargs_for_weights
from compressor.recipe import TeacherConfig


def load_teacher(cfg: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    """Build or load the teacher, strictly load its weights, freeze it; CPU, eval mode.

    `num_classes` and `in_channels` are the data set's. With a TorchScript or .pt2 file the
    file is the whole model and `arch`/`entrypoint`/`kwargs` are not used.
    """
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise UserError(
            f"teacher.num_classes is {cfg.num_classes} but the data set has {num_classes} "
            "classes; remove teacher.num_classes or use a teacher trained on this data"
        )
    path = cfg.checkpoint
    file_format = cfg.format
    if path is not None:
        check_file(path)
        if file_format == "auto":
            file_format = detect_format(path)
    if path is not None and file_format in _PROGRAMS:
        _check_trusted_program(path, file_format, cfg)
    if path is not None and file_format == "torchscript":
        model = _load_torchscript(path)
    elif path is not None and file_format == "export":
        model = _load_exported(path, in_channels)
    else:
        model = _build_with_weights(cfg, num_classes, in_channels)
    for parameter in model.parameters():  # ScriptModules refuse model.requires_grad_()
        parameter.requires_grad_(False)
    model.eval()
    return model


_PROGRAMS = {"torchscript": "TorchScript", "export": "torch.export"}
# What a teacher program needs: eval mode and any batch size; the example batch must hold two
# images or more, or torch specialises the batch dimension to 1 and refuses the Dim.
_EXPORT_HOW = (
    "torch.export.export(model.eval(), (x,), dynamic_shapes=({0: "
    "torch.export.Dim('batch')},)) with x a batch of 2 or more images"
)


def _check_trusted_program(path: Path, file_format: str, cfg: TeacherConfig) -> None:
    """A TorchScript or torch.export file is a program, not data: loading it runs what the
    file says. torch.export.load unpickles parts of the archive with the full unpickler and
    parses shape expressions with sympy (eval), and a graph's targets reach any attribute of
    torch; TorchScript runs the file's code in its interpreter. So, like a pickled model,
    such a file is loaded only when the recipe says the file is trusted."""
    name = _PROGRAMS[file_format]
    if not zipfile.is_zipfile(path):  # a damaged file: no point in asking for trust
        raise UserError(
            f"{path}: cannot load as a {name} program (not a zip archive: truncated, "
            "corrupt or another kind of file)"
        )
    if not cfg.trust_pickle:
        # With teacher.arch (or entrypoint) already given, what is missing is a weights file.
        field = "teacher.arch" if cfg.arch else "teacher.entrypoint" if cfg.entrypoint else None
        instead = (
            f"point teacher.checkpoint at a file of {field}'s weights, its state_dict()"
            if field
            else "give teacher.arch and a checkpoint of weights"
        )
        raise UserError(
            f"{path}: loading a {name} program runs code from the file; if you trust this "
            f"file set teacher.trust_pickle: true (or {instead})"
        )


def _build_with_weights(cfg: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    path = cfg.checkpoint
    # The weights of an arch or entrypoint teacher; a bare file is read below, as a model.
    named = cfg.arch or cfg.entrypoint
    state_dict = read_state_dict(path, cfg.trust_pickle) if path and named else None
    if cfg.entrypoint:
        model = _call_entrypoint(cfg.entrypoint, cfg.kwargs, num_classes, in_channels)
        name, field = cfg.entrypoint, "teacher.entrypoint"
    elif cfg.arch:
        kwargs = kwargs_for_weights(cfg.arch, cfg.kwargs, state_dict or {})
        model = create_model(cfg.arch, num_classes, in_channels, **kwargs)
        name, field = cfg.arch, "teacher.arch"
    else:
        # Only a weights file: usable if it pickles the whole model (torch.save(model)).
        assert path is not None  # TeacherConfig guarantees a source
        checkpoint = read_checkpoint(path, cfg.trust_pickle)
        pickled = find_module(checkpoint)
        if pickled is None:
            raise UserError(_which_model_hint(path, checkpoint))
        return pickled
    if state_dict is not None:
        load_weights(
            model,
            state_dict,
            source=str(path),
            model_name=name,
            data_classes=num_classes,
            data_channels=in_channels,
            arch_field=field,
        )
    return model


def _which_model_hint(path: Path, checkpoint: object) -> str:
    """A weights file without its model: a student.pt that compress wrote records the arch
    (and kwargs) that builds it, so the line can give the exact setting."""
    record = checkpoint if isinstance(checkpoint, dict) else {}
    recorded = record.get("arch")
    if not isinstance(recorded, str) or "state_dict" not in record:
        return (
            f"{path} holds weights only; set teacher.arch (e.g. resnet56) or "
            "teacher.entrypoint to say which model they belong to"
        )
    kwargs = record.get("kwargs")
    with_kwargs = f" and teacher.kwargs: {kwargs}" if isinstance(kwargs, dict) and kwargs else ""
    return (
        f"{path} is a model compress trained, saved as weights and the arch that builds them; "
        f"set teacher.arch: {recorded}{with_kwargs} to use it as the teacher"
    )


def _call_entrypoint(
    entrypoint: str, kwargs: dict[str, Any], num_classes: int, in_channels: int
) -> nn.Module:
    """Import `package.module:callable` (only now: the recipe asked for it) and call it.

    `teacher.kwargs` are passed as given; `num_classes` and `in_channels` are added when the
    callable names them as parameters, so `def build(num_classes):` and `def build():` both
    work. A callable taking them only through **kwargs (torchvision's builders) is not given
    them: what it would do with them cannot be seen, and the recipe's kwargs say it.
    """
    module_name, _, attribute = entrypoint.partition(":")
    where = f"teacher.entrypoint {entrypoint}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name + ".").startswith(error.name + "."):
            raise UserError(
                f"{where}: module {module_name!r} not found; install it or add its folder "
                "to PYTHONPATH"
            ) from None
        raise UserError(f"{where}: importing {module_name} failed: {error}") from error
    except (Exception, SystemExit) as error:  # SystemExit: an argparse run at import time
        raise UserError(
            f"{where}: importing {module_name} {_what_it_did(error)}{DEBUG_HINT}"
        ) from error
    if not hasattr(module, attribute):
        names = [n for n, v in vars(module).items() if not n.startswith("_") and _builds(v)]
        raise UserError(
            f"{where}: module {module_name} has no attribute {attribute!r}; "
            f"its callables: {', '.join(sorted(names)[:15]) or 'none'}"
        )
    build = getattr(module, attribute)
    if isinstance(build, nn.Module):  # calling it would run its forward with no input
        raise UserError(
            f"{where}: {attribute} is a model (a {type(build).__name__}), not the function or "
            "class that builds it; name that instead"
        )
    if not callable(build):
        raise UserError(
            f"{where}: {attribute} is a {type(build).__name__}, not a function or class "
            "that builds the model"
        )
    arguments = dict(kwargs)
    for parameter, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if parameter not in arguments and _takes_parameter(build, parameter):
            arguments[parameter] = value
    try:
        model = build(**arguments)
    except (Exception, SystemExit) as error:
        raise UserError(f"{where} {_what_it_did(error)}{DEBUG_HINT}") from error
    if not isinstance(model, nn.Module):
        raise UserError(
            f"{where} returned {type(model).__name__!r}, not a torch.nn.Module; return the "
            "model itself"
        )
    return model


def _builds(value: object) -> bool:
    """Could `value` be the builder an entrypoint names? A model instance is callable too."""
    return callable(value) and not isinstance(value, nn.Module)


def _what_it_did(error: BaseException) -> str:
    """The user code's failure as words. A sys.exit() in it would otherwise end compress
    itself: exit 0 with nothing done, or exit 1, read as a failed check."""
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r}) instead of returning"
    return f"raised {type(error).__name__}: {error}"


def _takes_parameter(fn: Any, name: str) -> bool:
    try:
        parameter = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):  # builtins and some C extensions have no signature
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _load_torchscript(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            # torch deprecates TorchScript in favour of torch.export; a user who only has a
            # TorchScript teacher cannot act on that warning, so it is not shown.
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise UserError(
            f"{path}: cannot load as TorchScript ({short_reason(error)}); "
            "save one with torch.jit.save(torch.jit.script(model), path)"
        ) from None


# Ops whose `training` flag torch.export records in the graph, and that flag's position.
_TRAINING_FLAG = {
    "aten::batch_norm": 5,
    "aten::native_batch_norm": 5,
    "aten::_native_batch_norm_legit": 5,
    "aten::_native_batch_norm_legit_functional": 5,
    "aten::dropout": 2,
    "aten::native_dropout": 2,
    "aten::feature_dropout": 2,
    "aten::alpha_dropout": 2,
    "aten::feature_alpha_dropout": 2,
}


def _load_exported(path: Path, in_channels: int) -> nn.Module:
    """`torch.export.load(path).module()`, checked to be usable as a teacher.

    In torch 2.14 the train/eval behaviour of an exported program is fixed when it is
    exported: `.module()` returns a GraphModule whose `train()` and `eval()` raise
    NotImplementedError. The graph rewrite that used to switch one to eval,
    `torch.ao.quantization.move_exported_model_to_eval`, is no longer in torch (pt2e lives in
    torchao) and only ever handled dropout and batch-norm patterns. So we refuse programs
    exported in training mode, and make `eval()` an allowed no-op (the graph already is eval)
    while `train()` still refuses. Moving it with `.to(device)` works for graphs without
    device constants; otherwise see `torch.export.passes.move_to_device_pass`.
    """
    try:
        # From an open file: torch.export.load logs a warning for names not ending in .pt2.
        with path.open("rb") as stream, _quiet_loggers("torch.export", "torch._export"):
            program = torch.export.load(stream)
    except Exception as error:
        raise UserError(
            f"{path}: cannot load as a torch.export program ({short_reason(error)}); "
            f"save one with torch.export.save(torch.export.export(...), path): {_EXPORT_HOW}"
        ) from None
    _check_exported(program, path, in_channels)
    module = program.module()
    for submodule in module.modules():
        submodule.training = False
    module.train = types.MethodType(_eval_only, module)  # type: ignore[method-assign]
    # calls the train(False) above
    module.eval = types.MethodType(nn.Module.eval, module)  # type: ignore[method-assign]
    return module


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """torch logs a damaged archive's whole traceback before it raises; the error below names
    the file and the reason in one line, so the log is not shown."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _eval_only(self: nn.Module, mode: bool = True) -> nn.Module:
    if mode:
        raise RuntimeError(
            "this teacher is a torch.export program: its eval behaviour is fixed in the graph "
            "and it cannot be switched to training mode"
        )
    return self


def _check_exported(program: torch.export.ExportedProgram, path: Path, in_channels: int) -> None:
    """Refuse, with the fix, what would fail later: training-mode graphs, fixed batch sizes."""
    user_inputs = program.graph_signature.user_inputs
    if len(user_inputs) != 1:
        raise UserError(
            f"{path}: the exported program takes {len(user_inputs)} inputs; a teacher takes "
            "one batch of images"
        )
    placeholder = next(n for n in program.graph.nodes if n.name == user_inputs[0])
    shape = placeholder.meta["val"].shape
    export_hint = f"export {_EXPORT_HOW}"
    if len(shape) != 4:
        raise UserError(f"{path}: the exported program takes a {len(shape)}-d input, not images")
    if isinstance(shape[0], int):
        raise UserError(
            f"{path}: exported for a fixed batch size of {shape[0]}; {export_hint} so it "
            "accepts any batch size"
        )
    if isinstance(shape[1], int) and shape[1] != in_channels:
        raise ChannelsDiffer(
            f"{path}: the exported program takes {shape[1]}-channel images, the data has "
            f"{in_channels}",
            channels=shape[1],
        )
    for node in program.graph.nodes:
        schema = getattr(node.target, "_schema", None)  # aten ops have one; getitem does not
        position = _TRAINING_FLAG.get(schema.name) if schema is not None else None
        if position is not None and len(node.args) > position and node.args[position]:
            raise UserError(
                f"{path}: exported in training mode (batch norm uses batch statistics, "
                f"dropout is active); call model.eval() first: {export_hint}"
            )


def check_teacher_output(teacher: nn.Module, images: torch.Tensor, num_classes: int) -> None:
    """Run the teacher once on a real batch and check it returns [batch, num_classes] logits.

    Catches, with a readable message, what loading cannot: a TorchScript or exported
    teacher built for another input size, or one that outputs a different class count.
    """
    try:
        with torch.inference_mode():
            logits = teacher(images)
    except SystemExit as error:  # in its forward: compress would end, silent, with its code
        raise UserError(f"the teacher's forward {_what_it_did(error)}{DEBUG_HINT}") from error
    except Exception as error:
        raise UserError(
            f"the teacher fails on a batch of shape {list(images.shape)} "
            f"({short_reason(error)}); if it was built for another input size or channel "
            f"count, that is why{DEBUG_HINT}"
        ) from error
    expected = [images.shape[0], num_classes]
    if not isinstance(logits, torch.Tensor) or list(logits.shape) != expected:
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserError(
            f"the teacher returns {got} for a batch of {images.shape[0]}; expected logits of "
            f"shape {expected} (one score per class of the data set)"
        )
    # Its accuracy would read as chance, which teacher.min_accuracy (0 by default) passes,
    # and distillation would stop at its first NaN loss, blaming the learning rate.
    if not torch.isfinite(logits).all():
        raise UserError(
            "the teacher returns NaN or infinite logits on real images: its weights are "
            "damaged or were saved from a diverged training; check teacher.checkpoint"
        )


def check_builds_the_same_weights(
    cfg: TeacherConfig, num_classes: int, in_channels: int, fingerprint: str
) -> None:
    """Without a checkpoint, what builds the teacher is its weights too: a builder that draws
    new ones on every call (an untrained model, initialised from the global seed) would give
    a resume or an export another teacher than the one distilled from. A second call tells,
    before any training rather than at export. `fingerprint` is the first call's
    `weights_sha256`."""
    again = load_teacher(cfg, num_classes, in_channels)
    if weights_sha256(again) != fingerprint:
        raise UserError(
            f"{cfg.builder()}: builds other weights on every call (two calls differ); "
            "without teacher.checkpoint it must build the same weights every time (load "
            "them, or seed their initialisation), or name the weights in teacher.checkpoint"
        )
