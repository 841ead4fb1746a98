"""KD's soft-target loss against a hand-computed value."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from compressor.methods import build_method
from compressor.methods.kd import soft_kl
from compressor.recipe import KDMethod
from tests.methods.helpers import step


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_kl_matches_a_hand_computed_value() -> None:
    student = [1.0, 2.0, 0.0]
    teacher = [0.0, 1.0, 3.0]
    temperature = 2.0
    p_s = _softmax([v / temperature for v in student])
    p_t = _softmax([v / temperature for v in teacher])
    expected = sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))
    # Two identical rows: batchmean must average, not sum.
    value = soft_kl(torch.tensor([student] * 2), torch.tensor([teacher] * 2), temperature)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert soft_kl(torch.tensor([teacher]), torch.tensor([teacher]), 4.0).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_each_weight_scales_its_own_term(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """ce_weight on the CE and kd_weight on the KD term: swapped, the defaults (both 1) give
    the same loss, so only unequal weights show it."""
    config = KDMethod(ce_weight=0.3, kd_weight=0.7)
    out = step(build_method(config, student_factory(), teacher), batch)
    ce, kd = out.parts["ce"], out.parts["kd"]
    assert not torch.isclose(ce, kd)
    torch.testing.assert_close(out.loss.detach(), 0.3 * ce + 0.7 * kd)
