"""One training epoch on a small real model and data set: the figures it reports, the
learning rate it sets, and a diverging loss stopped with the part named."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from compressor.data.loader import BatchLoader
from compressor.data.sets import ImageSet
from compressor.engine.device import DeviceSetup
from compressor.engine.distributed import Distributed
from compressor.engine.training import (
    EpochResult,
    NonFiniteLoss,
    StepCallback,
    _epoch_stats,
    train_one_epoch,
)
from compressor.methods import StepOutput, build_method
from compressor.methods.ce import CE
from compressor.recipe import BSSMethod, CEMethod, KDMethod, MethodConfig, TrainConfig

CPU = DeviceSetup(torch.device("cpu"), None, channels_last=False)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def loader(images: int = 40, batch_size: int = 8) -> BatchLoader:
    """Random 1×6×6 images in 3 classes, shuffled and batched as training reads them."""
    generator = torch.Generator().manual_seed(0)
    split = ImageSet(
        torch.randint(0, 256, (images, 1, 6, 6), dtype=torch.uint8, generator=generator),
        torch.arange(images) % 3,
    )
    return BatchLoader(
        split, batch_size=batch_size, device=CPU.device, mean=(0.5,), std=(0.25,), train=True
    )


def train(
    student: nn.Module,
    config: TrainConfig,
    epoch: int = 0,
    on_step: StepCallback | None = None,
    method: MethodConfig | None = None,
    step_stats: list[dict[str, float]] | None = None,
) -> EpochResult:
    """One epoch of plain cross-entropy (or `method`, from a teacher like the student): 40
    images, 5 steps of 8. `step_stats` collects each step's own statistics."""
    optimizer = torch.optim.SGD(student.parameters(), lr=config.optimizer.lr)
    teacher = None if method is None else small_net().eval()
    built = build_method(method or CEMethod(), student, teacher)
    if step_stats is not None:
        step = built.step

        def recording_step(*args: Any, **kwargs: Any) -> StepOutput:
            output = step(*args, **kwargs)
            step_stats.append(output.stats)
            return output

        built.step = recording_step  # type: ignore[method-assign]
    return train_one_epoch(
        student,
        built,
        loader(),
        optimizer,
        torch.amp.GradScaler("cpu", enabled=False),
        CPU,
        config,
        epoch,
        Distributed(),
        on_step,
    )


def test_an_epoch_reports_its_figures_and_follows_the_schedule() -> None:
    config = TrainConfig.model_validate(
        {"epochs": 4, "device": "cpu", "optimizer": {"lr": 0.4}, "schedule": {"name": "cosine"}}
    )
    student = small_net()
    before = [p.detach().clone() for p in student.parameters()]
    steps = []
    result = train(student, config, epoch=2, on_step=lambda *figures: steps.append(figures))
    assert [(step, total, images) for step, total, _, _, images in steps] == [(5, 5, 40)]
    assert steps[-1][2] == pytest.approx(result.loss)  # the running mean ends as the epoch's
    assert 0.0 <= result.train_accuracy <= 100.0 and set(result.parts) == {"ce"}
    assert result.parts["ce"] == pytest.approx(result.loss)
    # Cosine over 4 epochs, set per step: the last of 5 steps in epoch 2 is at 2.8 epochs.
    assert result.lr == pytest.approx(0.4 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 2.8 / 4))))
    assert not any(torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    assert student.training


@pytest.mark.parametrize("scaled", [False, True], ids=["no scaler", "loss scaler"])
def test_each_step_is_plain_sgd_on_the_true_gradients(scaled: bool) -> None:
    """Replayed by hand on the batches the epoch drew: gradients zeroed every step (a scaler
    would hide stale ones: unscaled, they are 65,536× smaller than the new), and under a loss
    scaler clipped once unscaled (clipping the scaled ones shrinks every step 65,536×)."""
    config = TrainConfig.model_validate(
        {
            "epochs": 1,
            "device": "cpu",
            "optimizer": {"lr": 0.5},
            "schedule": {"name": "constant"},
            "grad_clip_norm": 0.05,
        }
    )
    student, replayed = small_net(), small_net()
    method = build_method(CEMethod(), student)
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = method.step

    def recording_step(images: torch.Tensor, labels: torch.Tensor, *rest: Any) -> StepOutput:
        batches.append((images.clone(), labels.clone()))
        return step(images, labels, *rest)

    method.step = recording_step  # type: ignore[method-assign]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, enabled=scaled)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    train_one_epoch(
        student, method, loader(), optimizer, scaler, CPU, config, 0, Distributed(), None
    )
    by_hand = torch.optim.SGD(replayed.parameters(), lr=0.5)
    for images, labels in batches:
        by_hand.zero_grad()
        nn.functional.cross_entropy(replayed(images), labels).backward()
        nn.utils.clip_grad_norm_(replayed.parameters(), 0.05)
        by_hand.step()
    assert len(batches) == 5
    for trained, expected in zip(student.parameters(), replayed.parameters(), strict=True):
        torch.testing.assert_close(trained, expected)


def test_an_epoch_trains_a_student_handed_over_in_eval_mode_in_train_mode() -> None:
    """The student comes back from the previous epoch's evaluation in eval mode: left so, its
    BatchNorm layers normalised with frozen running statistics and never updated them."""
    torch.manual_seed(0)
    student = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    norm = student[1]
    running_mean = norm.running_mean.clone()
    train(student, TrainConfig.model_validate({"epochs": 1, "device": "cpu"}))
    assert student.training
    assert norm.num_batches_tracked.item() == 5  # one update per step
    assert not torch.equal(norm.running_mean, running_mean)


class _InfiniteLoss(CE):
    """Cross-entropy plus +inf: a loss that overflowed without becoming NaN."""

    def step(self, *args: Any, **kwargs: Any) -> StepOutput:
        output = super().step(*args, **kwargs)
        return replace(output, loss=output.loss + float("inf"))


def test_an_infinite_loss_stops_training_as_a_nan_does() -> None:
    """+inf is no NaN: a check for NaN alone let an overflowed loss train on (its gradients
    are finite) and checkpoint a meaningless epoch."""
    config = TrainConfig.model_validate({"epochs": 1, "device": "cpu"})
    student = small_net()
    optimizer = torch.optim.SGD(student.parameters(), lr=config.optimizer.lr)
    with pytest.raises(NonFiniteLoss, match=r"^the loss became NaN or infinite in epoch 1"):
        train_one_epoch(
            student,
            _InfiniteLoss(CEMethod(), student),
            loader(),
            optimizer,
            torch.amp.GradScaler("cpu", enabled=False),
            CPU,
            config,
            0,
            Distributed(),
        )


def test_a_diverging_loss_names_the_part_and_epoch() -> None:
    config = TrainConfig.model_validate(
        {"epochs": 2, "device": "cpu", "optimizer": {"lr": 1e30}, "schedule": {"name": "constant"}}
    )
    with pytest.raises(
        NonFiniteLoss, match=r"the loss \(its parts .*ce.*\) became NaN or infinite in epoch 2"
    ):
        train(small_net(), config, epoch=1)


def test_a_distillation_term_that_overflows_names_the_method_settings_too() -> None:
    """KD at T = 1e30: its T² overflows at the first step whatever the learning rate, and
    "lower the lr" alone sent the user the wrong way."""
    config = TrainConfig.model_validate({"epochs": 1, "device": "cpu"})
    with pytest.raises(NonFiniteLoss) as error:
        train(small_net(), config, method=KDMethod(temperature=1e30))
    assert "Lower train.optimizer.lr (or the method's temperature or kd weight) and" in str(
        error.value
    )


def test_attack_statistics_are_means_over_the_attacked_samples_only() -> None:
    """β falls to 0 before the last of the 5 steps (BSS stops attacking at 3/4 of training),
    and batches whose teacher gets too few images right attack nothing: those batches must not
    pull the share on the boundary, or the attack steps, towards 0."""
    config = TrainConfig.model_validate({"epochs": 1, "device": "cpu"})
    steps: list[dict[str, float]] = []
    result = train(small_net(), config, method=BSSMethod(), step_stats=steps)
    attacked = [step["attacked"] for step in steps]
    assert attacked[-1] == 0 and sum(attacked) > 0
    for name in ("boundary_fraction", "mean_steps"):
        weighted = sum(step[name] * step["attacked"] for step in steps) / sum(attacked)
        assert result.stats[name] == pytest.approx(weighted)
    assert result.stats["mean_steps"] == 10  # every attack ran its 10 steps
    assert result.stats["attacked"] == pytest.approx(sum(attacked) / 5)  # per batch


def test_an_epoch_without_an_attack_reports_no_attack_statistics() -> None:
    """β is 0 throughout: "on boundary 0 %" would claim an attack that missed every time."""
    config = TrainConfig.model_validate({"epochs": 1, "device": "cpu"})
    result = train(small_net(), config, method=BSSMethod(weights={"beta_init": 0.0}))
    assert result.stats["attacked"] == 0
    assert "boundary_fraction" not in result.stats and "mean_steps" not in result.stats


def test_samples_attacked_are_counted_per_global_batch_whatever_the_process_count() -> None:
    """Summed over 2 processes: 20 samples attacked in 5 steps of the global batch are 4 per
    batch, as with one process (it read 2: per process's share). Means of per-process
    figures divide by all the processes' batches; per-sample ones by the samples attacked."""
    sums = {"attacked": 20.0, "mean_steps": 30.0, "triplet_active": 4.0}
    assert _epoch_stats(sums, steps=5, processes=2) == {
        "attacked": 4.0,
        "mean_steps": 1.5,
        "triplet_active": 0.4,
    }
    assert _epoch_stats({"attacked": 0.0, "mean_steps": 0.0}, steps=5, processes=1) == {
        "attacked": 0.0
    }
