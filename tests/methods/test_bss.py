"""BSS's weight schedule against the authors' reference training script."""

from __future__ import annotations

import pytest

from compressor.methods import TrainProgress
from compressor.methods.bss import schedule
from compressor.recipe import ScheduleWeights


def test_schedule_follows_the_reference_script() -> None:
    weights = ScheduleWeights()
    # alpha = 1 + 3 max(1 - e/80, 0), beta = 2 max(1 - e/60, 0), e in epochs, moving per step.
    alpha, beta = schedule(weights, TrainProgress(epoch=0, epochs=80))
    assert (alpha, beta) == (4.0, 2.0)
    alpha, beta = schedule(weights, TrainProgress(epoch=30, epochs=80, within_epoch=0.5))
    assert alpha == pytest.approx(1 + 3 * (1 - 30.5 / 80))
    assert beta == pytest.approx(2 * (1 - 30.5 / 60))
    assert schedule(weights, TrainProgress(epoch=59, epochs=80, within_epoch=0.9))[1] > 0
    assert schedule(weights, TrainProgress(epoch=60, epochs=80))[1] == 0
    assert schedule(weights, TrainProgress(epoch=79, epochs=80))[0] == pytest.approx(1 + 3 / 80)


def test_one_epoch_run_attacks_for_its_first_three_quarters() -> None:
    weights = ScheduleWeights()
    assert schedule(weights, TrainProgress(epoch=0, epochs=1, within_epoch=0.7))[1] > 0
    assert schedule(weights, TrainProgress(epoch=0, epochs=1, within_epoch=0.75))[1] == 0
