"""One training-mode step's forward pass of the student, tried before the run is claimed.

Any torchvision classifier can be named as the student, but not all of them train on any
data: GoogLeNet and Inception return auxiliary outputs in training mode, a ViT takes one image
size only. Found on the first batch of epoch 1, such a student would leave a claimed run
directory behind; found here, it is one line of bad input.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from compressor.errors import UserError, short_reason


def check_student_output(
    student: nn.Module, name: str, images: torch.Tensor, num_classes: int
) -> None:
    """Run a copy of the student in training mode on real images; expect [batch, classes].

    A copy, with the random state put back, so the probe changes neither the student's
    BatchNorm statistics nor the random stream training will draw from.
    """
    probe = copy.deepcopy(student).train()
    if len(images) == 1:  # BatchNorm in training mode needs two values per channel
        images = images.repeat(2, 1, 1, 1)
    try:
        with _random_state_kept(images.device), torch.no_grad():
            logits = probe(images)
    except torch.cuda.OutOfMemoryError:
        raise  # the machine's limit, not the student's fault: the usual message says so
    except Exception as error:
        raise UserError(
            f"student {name} fails on a batch of shape {list(images.shape)} "
            f"({short_reason(error)}); pick another student.arch, give it images of "
            "another size (data.image_size: ImageNet models want more than 32 pixels) or set "
            "student.kwargs for this input size"
        ) from None
    expected = [images.shape[0], num_classes]
    if not isinstance(logits, torch.Tensor):
        raise UserError(
            f"student {name} returns a {type(logits).__name__} in training mode, not one "
            f"tensor of logits {expected}; pick another student.arch (or turn its extra "
            "outputs off in student.kwargs)"
        )
    if list(logits.shape) != expected:
        raise UserError(
            f"student {name} returns {list(logits.shape)} for a batch of {images.shape[0]}; "
            f"expected logits of shape {expected} (one score per class of the data set)"
        )


def _random_state_kept(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """fork_rng for the CPU generator and the accelerator's the images are on."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)
