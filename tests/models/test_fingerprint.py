"""compressor/models/fingerprint.py: the hash that pins a run's teacher."""

from __future__ import annotations

import copy

import torch

from compressor.models import create_model
from compressor.models.fingerprint import weights_sha256


def test_the_same_weights_hash_alike_whatever_their_memory_layout() -> None:
    model = create_model("resnet8", 10)
    same = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert weights_sha256(same) == weights_sha256(model)
    rebuilt = create_model("resnet8", 10)
    rebuilt.load_state_dict(model.state_dict())
    assert weights_sha256(rebuilt) == weights_sha256(model)


def test_any_changed_value_or_buffer_changes_the_hash() -> None:
    model = create_model("resnet8", 10)
    before = weights_sha256(model)
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-6
    assert weights_sha256(nudged) != before
    trained_statistics = copy.deepcopy(model)
    norm = next(m for m in trained_statistics.modules() if isinstance(m, torch.nn.BatchNorm2d))
    norm.running_mean += 0.5
    assert weights_sha256(trained_statistics) != before


def test_dtype_is_part_of_the_hash_and_half_precision_hashes() -> None:
    layer = torch.nn.Linear(3, 2)
    assert weights_sha256(layer.to(torch.bfloat16)) != weights_sha256(layer.float())
