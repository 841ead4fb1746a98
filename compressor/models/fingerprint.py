"""A model's weights as one hash: which teacher a run was distilled from.

A recipe names its teacher by path (`teacher.checkpoint`), and the file there may be replaced
after the run started: a teacher retrained in place, a run moved to a machine where another
file has the name. A resumed run would then go on distilling from another teacher, and an
export would time and score another teacher beside the student. The run records this hash
when it starts; resume and export compare it with the teacher they load.

The weights are hashed, not the file: the same teacher saved again (another format, a
checkpoint re-written with a `module.` prefix) is still the same teacher.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict: names, dtypes, shapes and values, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):  # extra state some modules keep
            continue
        values = tensor.detach()
        if values.is_quantized:
            values = values.dequantize()
        values = values.cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{values.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(values.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
