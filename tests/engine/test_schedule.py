"""The learning rate as a function of the fractional epoch, and the optimiser a recipe builds."""

from __future__ import annotations

import math

import pytest
import torch

from compressor.engine.schedule import build_optimizer, lr_factor, set_lr
from compressor.recipe import OptimizerConfig, ScheduleConfig


def test_cosine_falls_from_one_to_zero_over_the_run() -> None:
    config = ScheduleConfig(name="cosine")
    assert lr_factor(config, 0.0, 10) == 1.0
    assert lr_factor(config, 5.0, 10) == pytest.approx(0.5)
    assert lr_factor(config, 2.5, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(config, 10.0, 10) == pytest.approx(0.0, abs=1e-12)
    factors = [lr_factor(config, step / 10, 10) for step in range(100)]
    assert factors == sorted(factors, reverse=True)  # moves every step, never back up


def test_warm_up_rises_linearly_then_cosine_spans_the_rest() -> None:
    config = ScheduleConfig(name="cosine", warmup_epochs=2)
    assert lr_factor(config, 0.0, 10) == pytest.approx(0.0005)
    assert lr_factor(config, 1.0, 10) == pytest.approx(0.5, abs=1e-3)
    assert lr_factor(config, 2.0, 10) == 1.0  # the peak, where warm-up ends
    assert lr_factor(config, 6.0, 10) == pytest.approx(0.5)  # half-way through epochs 2-10


def test_multistep_multiplies_by_gamma_at_each_milestone() -> None:
    config = ScheduleConfig(name="multistep", milestones=[3, 6], gamma=0.2)
    assert [lr_factor(config, epoch, 8) for epoch in (0.0, 2.99, 3.0, 5.5, 6.0, 7.9)] == (
        pytest.approx([1.0, 1.0, 0.2, 0.2, 0.04, 0.04])
    )


def test_constant_stays_at_the_set_lr() -> None:
    config = ScheduleConfig(name="constant")
    assert {lr_factor(config, epoch, 4) for epoch in (0.0, 1.5, 3.99)} == {1.0}


def test_sgd_and_adamw_get_the_recipes_settings() -> None:
    parameters = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(
        parameters, OptimizerConfig(lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True)
    )
    assert isinstance(sgd, torch.optim.SGD)
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "weight_decay", "nesterov")} == {
        "lr": 0.05,
        "momentum": 0.8,
        "weight_decay": 1e-3,
        "nesterov": True,
    }
    adamw = build_optimizer(parameters, OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"]) == (1e-3, 0.05)
    set_lr(adamw, 0.25)
    assert [group["lr"] for group in adamw.param_groups] == [0.25]
