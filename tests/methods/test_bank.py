"""Bank mode: refresh epochs attack and bank, reuse epochs take the banked samples unchanged
and never run the teacher on them; bank_epochs 1 is the attack-every-step method."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from compressor.methods import StepOutput, TrainProgress, build_method
from compressor.methods.bank import BoundarySampler
from compressor.methods.boundary import find_boundary_samples
from compressor.recipe import AMKDMethod, AttackConfig, BSSMethod, MethodConfig

EVERY_SAMPLE = AttackConfig(fraction=1.0)
DATASET_SIZE = 100


def _teacher_calls(teacher: nn.Module) -> tuple[list[int], Callable[[], None]]:
    """Counts teacher passes of any kind (forward, forward_features): all go through
    `features`."""
    calls: list[int] = []
    handle = teacher.features.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls, handle.remove


def _keys(count: int) -> torch.Tensor:
    """Data-set indices of a batch: distinct, unordered, spread over the data set."""
    return torch.randperm(DATASET_SIZE, generator=torch.Generator().manual_seed(5))[:count]


def _step(method, batch, epoch: int, indices: torch.Tensor | None, seed: int = 0) -> StepOutput:
    torch.manual_seed(seed)
    images, labels = batch
    return method.step(images, labels, TrainProgress(epoch=epoch, epochs=10), indices)


def test_refresh_banks_what_the_attack_made_and_reuse_hands_it_back(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        logits = teacher(images)
    labels = logits.argmax(dim=1)  # every sample is a candidate base image
    config = AttackConfig(fraction=0.5)
    keys = _keys(len(labels))
    sampler = BoundarySampler(teacher, config, None, bank_epochs=3, dataset_size=DATASET_SIZE)
    torch.manual_seed(0)
    made = sampler.samples(images, labels, keys, logits, logits, epoch=0)
    torch.manual_seed(0)
    attack = find_boundary_samples(teacher, images, labels, logits, logits, config, None)
    for name in ("images", "teacher_logits", "index", "source", "target", "landed"):
        assert torch.equal(getattr(made, name), getattr(attack, name)), name
    assert made.stats == attack.stats and made.stats["attacked"] == 16
    assert sampler.bank is not None
    assert torch.equal(sampler.bank.has(keys), torch.isin(torch.arange(32), made.index))

    calls, remove = _teacher_calls(teacher)
    try:
        for epoch in (1, 2):  # the rest of the window: no teacher pass at all
            reused = sampler.samples(images, labels, keys, logits, logits, epoch=epoch)
            for name in ("images", "teacher_logits", "index", "source", "target", "landed"):
                assert torch.equal(getattr(reused, name), getattr(made, name)), name
            assert reused.images.is_contiguous(memory_format=torch.channels_last)
            assert reused.stats == {**made.stats, "mean_steps": 0.0}
        assert calls == []
        sampler.samples(images, labels, keys, logits, logits, epoch=3)  # the next window
        assert calls
    finally:
        remove()


def test_reuse_hands_out_only_rows_that_were_banked(teacher: nn.Module, batch) -> None:
    """Half the batch banked (its other rows were in another batch at the refresh): reuse
    picks among the banked rows only; any other row would hand out the bank's zero-filled
    image, with a source and target of class 0, as a boundary sample."""
    images, _ = batch
    with torch.no_grad():
        logits = teacher(images)
    labels = logits.argmax(dim=1)  # every sample is a candidate base image
    keys = _keys(len(labels))
    sampler = BoundarySampler(teacher, EVERY_SAMPLE, None, bank_epochs=2, dataset_size=DATASET_SIZE)
    half = slice(0, 16)
    torch.manual_seed(0)
    made = sampler.samples(images[half], labels[half], keys[half], logits[half], logits[half], 0)
    assert made.index.numel() == 16
    reused = sampler.samples(images, labels, keys, logits, logits, epoch=1)
    assert sorted(reused.index.tolist()) == list(range(16))
    assert all(image.abs().sum() > 0 for image in reused.images)
    order = torch.argsort(made.index)
    for position, row in enumerate(reused.index.tolist()):
        where = order[row]
        assert torch.equal(reused.images[position], made.images[where])


def test_a_sampler_refreshes_the_first_epoch_it_sees(teacher: nn.Module) -> None:
    """After a resume the bank is empty, so the resumed epoch attacks even mid-window."""
    sampler = BoundarySampler(
        teacher, AttackConfig(), None, bank_epochs=2, dataset_size=DATASET_SIZE
    )
    epochs = (1, 1, 2, 2, 3, 5)
    assert [sampler.refreshes(e) for e in epochs] == [True, True, True, True, False, True]


def test_bank_mode_needs_a_size_and_indices(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    with pytest.raises(ValueError, match="dataset_size"):
        build_method(AMKDMethod(bank_epochs=2), student_factory(), teacher)
    method = build_method(
        BSSMethod(bank_epochs=2), student_factory(), teacher, dataset_size=DATASET_SIZE
    )
    with pytest.raises(ValueError, match="indices"):
        _step(method, batch, 0, None)


BANKED = [
    BSSMethod(attack=EVERY_SAMPLE, bank_epochs=2),
    AMKDMethod(attack=EVERY_SAMPLE, bank_epochs=2, mining="hardest", lambda_bss=1.0),
    AMKDMethod(  # a margin the tiny test models' feature distances leave active
        attack=EVERY_SAMPLE,
        bank_epochs=2,
        mining="hardest",
        embedding="features",
        lambda_bss=1.0,
        margin=1.0,
    ),
]


@pytest.mark.parametrize("config", BANKED, ids=["bss", "amkd", "amkd-features"])
def test_reuse_epoch_runs_no_attack_yet_keeps_the_boundary_terms(
    config: MethodConfig, teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    width = 16 if getattr(config, "embedding", None) == "features" else 8
    student = student_factory(width=width)
    method = build_method(config, student, teacher, dataset_size=DATASET_SIZE)
    indices = _keys(len(batch[1]))
    calls, remove = _teacher_calls(teacher)
    try:
        refresh = _step(method, batch, 0, indices)
        assert len(calls) > 1  # the clean pass and the attack
        calls.clear()
        reuse = _step(method, batch, 1, indices)
        assert len(calls) == 1  # the clean pass only
    finally:
        remove()
    assert set(reuse.stats) == set(refresh.stats)
    assert refresh.stats["mean_steps"] > 0 and reuse.stats["mean_steps"] == 0
    assert reuse.stats["attacked"] == refresh.stats["attacked"] > 0
    # Same batch, same student: the banked samples give the very terms the attack gave.
    boundary_parts = [p for p in ("bss", "triplet") if p in refresh.parts]
    for part in boundary_parts:
        assert refresh.parts[part] > 0
        torch.testing.assert_close(reuse.parts[part], refresh.parts[part], rtol=0, atol=0)
    reuse.loss.backward()
    assert all(p.grad is not None for p in student.parameters())


@pytest.mark.parametrize("config", [BSSMethod(), AMKDMethod()], ids=["bss", "amkd"])
def test_bank_epochs_1_attacks_every_step_as_before(
    config: MethodConfig, teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    student = student_factory()
    indices = _keys(len(batch[1]))
    plain = _step(build_method(config, student, teacher), batch, 0, None)
    with_indices = build_method(config, student, teacher, dataset_size=DATASET_SIZE)
    assert _step(with_indices, batch, 0, indices).loss == plain.loss
    later = _step(with_indices, batch, 1, indices)
    assert later.stats["mean_steps"] > 0
    # A refresh epoch of bank mode is that same step: banking changes nothing in it.
    banked = config.model_copy(update={"bank_epochs": 4})
    refresh = _step(
        build_method(banked, student, teacher, dataset_size=DATASET_SIZE), batch, 0, indices
    )
    assert refresh.loss == plain.loss and refresh.stats == plain.stats
