"""One name → model registry, timm-style, with torchvision's classifiers as a fallback.

A recipe names its teacher and student by string (`resnet56`, `mobilenetv2`, `resnet18`), so
every architecture must be reachable from a name. Zoo families register themselves with
`@register_model`; any other name is tried against torchvision's classification models, so a
user can pick `mobilenet_v3_small` without anyone writing a wrapper for it.
"""

from __future__ import annotations

import difflib
import inspect
import reprlib
from collections.abc import Callable, Mapping
from functools import cache
from types import ModuleType
from typing import Any, TypeVar

from torch import nn

from compressor.errors import ChannelsDiffer, UserError, short_reason

ModelFn = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFn)

_ZOO: dict[str, ModelFn] = {}
_FIXED_ARGS = ("num_classes", "in_channels")  # passed by create_model, not by the recipe


def register_model(name: str) -> Callable[[F], F]:
    """Register `fn(num_classes, in_channels=3, **kwargs) -> nn.Module` under `name`."""

    def decorator(fn: F) -> F:
        if name in _ZOO:
            raise ValueError(f"model {name!r} is registered twice")
        _ZOO[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """The zoo's names, sorted (torchvision's names are accepted too but not listed)."""
    return sorted(_ZOO)


def _torchvision_models() -> ModuleType:
    """torchvision.models, imported when a name is not the zoo's. Importing torchvision costs
    about 2 s (its ops import torch._dynamo), which every command building a zoo model on the
    CPU, and every process of a torchrun, paid for nothing."""
    import torchvision.models

    return torchvision.models


@cache
def _torchvision_classifiers() -> frozenset[str]:
    # `module=models` restricts the list to classification models: detection or
    # segmentation builders do not take `num_classes` the same way and return dicts.
    models = _torchvision_models()
    return frozenset(models.list_models(module=models))


def is_known_model(name: str) -> bool:
    """True for a zoo name or a torchvision classification model name."""
    return name in _ZOO or name in _torchvision_classifiers()


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model; no weights are downloaded, ever.

    Raises UserError for an unknown name, a channel count torchvision cannot take, or
    constructor arguments the architecture does not accept.
    """
    if name in _ZOO:
        fn = _ZOO[name]
        try:
            # Bind first so a typo in the recipe's kwargs names what the model does accept.
            inspect.signature(fn).bind(num_classes, in_channels, **kwargs)
        except TypeError as error:
            accepted = [p for p in inspect.signature(fn).parameters if p not in _FIXED_ARGS]
            accepts = ", ".join(accepted) or "no extra arguments"
            raise UserError(f"model {name!r}: {error}; it accepts: {accepts}") from None
        try:
            return fn(num_classes, in_channels, **kwargs)
        except ValueError as error:
            raise UserError(f"model {name!r}: {error}") from None
        except _KWARG_ERRORS as error:
            # A kwarg of the wrong type (width_mult: abc) or value (width_mult: .inf); without
            # kwargs it is a bug here.
            if not kwargs:
                raise
            raise UserError(
                f"model {name!r} rejected its kwargs {kwargs} ({short_reason(error)}); check "
                "their types and values"
            ) from None
    if name in _torchvision_classifiers():
        return _create_torchvision(name, num_classes, in_channels, kwargs)
    raise UserError(_unknown_name_message(name))


_AUXILIARY_OUTPUTS = ("googlenet", "inception_v3")
# What a constructor raises for a kwarg it cannot take: torchvision checks values with
# ValueError or a bare assert (vit's image_size), arithmetic on inf overflows.
_KWARG_ERRORS = (TypeError, AssertionError, ArithmeticError)


def kwargs_for_weights(
    name: str, kwargs: dict[str, Any], weights: Mapping[str, Any]
) -> dict[str, Any]:
    """Build a GoogLeNet or Inception with auxiliary heads when its checkpoint has them: one
    trained here as a student has them off, torchvision's and most others have them on."""
    if name in _AUXILIARY_OUTPUTS and "aux_logits" not in kwargs:
        aux = any(key.startswith(("aux1.", "aux2.", "AuxLogits.")) for key in weights)
        # The checkpoint replaces every initial weight: skip torchvision's slow initialisation.
        return {"init_weights": False, **kwargs, "aux_logits": aux}
    return kwargs


def student_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The student's constructor arguments: GoogLeNet and Inception train with their auxiliary
    heads off unless the recipe says otherwise, since those make training-mode outputs a tuple
    that no loss here takes. (A teacher keeps them: it runs in eval mode, and its checkpoint
    has their weights.) `init_weights: True` is torchvision's present default, stated so that
    torchvision does not warn on every run that the default will change."""
    if name in _AUXILIARY_OUTPUTS:
        return {"aux_logits": False, "init_weights": True, **kwargs}
    return kwargs


# kwargs as an error line shows them: bounded, however large or deeply nested (a recipe's YAML
# anchors can make a value of millions of items, whose full repr took minutes).
_BRIEF = reprlib.Repr()  # keyword settings need Python 3.12
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 60, 60
_BRIEF.maxdict = _BRIEF.maxlist = _BRIEF.maxtuple = 8


def _create_torchvision(
    name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any]
) -> nn.Module:
    if in_channels != 3:
        raise ChannelsDiffer(
            f"model {name!r}: torchvision models take 3-channel images, the data has "
            f"{in_channels}; pick a zoo model ({', '.join(list_models())}) for this data",
            channels=3,
        )
    # Set here: random weights, or a teacher's from its checkpoint, as nothing is downloaded;
    # torchvision's own message would only say "multiple values for keyword argument".
    if "weights" in kwargs:
        raise UserError(
            f"model {name!r}: kwargs may not set weights: nothing is downloaded; a student "
            "starts from random weights, a teacher's come from teacher.checkpoint"
        )
    try:
        return _torchvision_models().get_model(
            name, weights=None, num_classes=num_classes, **kwargs
        )
    except (ValueError, *_KWARG_ERRORS) as error:
        if not kwargs:
            raise
        raise UserError(
            f"model {name!r} (torchvision) rejected its kwargs {_BRIEF.repr(kwargs)} "
            f"({short_reason(error)}); "
            "check their types and values"
        ) from None


def did_you_mean(name: str) -> str:
    """The hint for a mistyped model name ("ResNet56", "resnet-56"): " (did you mean
    resnet56 or resnet50?)", or "" when no name is close."""
    candidates = [*_ZOO, *_torchvision_classifiers()]
    close = difflib.get_close_matches(name.lower(), candidates, n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _unknown_name_message(name: str) -> str:
    hint = did_you_mean(name)
    return (
        f"unknown model {name!r}{hint}; known models: {', '.join(list_models())}, "
        "or any torchvision classification model (e.g. resnet18, mobilenet_v3_small)"
    )
