"""Terms averaged over rows whose count differs between processes: weighted so that DDP's
average of the gradients is the one-process gradient of the mean over all rows."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from compressor.methods import TrainProgress
from compressor.methods.global_mean import global_mean_weights
from compressor.methods.triplet import TripletKD
from compressor.recipe import TripletMethod

# Two terms over 6 rows of inputs: the first has 3 rows on process 0 and 1 on process 1, the
# second none on process 0 and 2 on process 1 (as boundary samples may fall).
ROWS = {0: (slice(0, 3), slice(0, 0)), 1: (slice(3, 4), slice(4, 6))}


def _inputs() -> torch.Tensor:
    return torch.randn(6, 3, generator=torch.Generator().manual_seed(1))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def _mean(model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    if not len(rows):
        return torch.zeros(())
    return model(rows).square().mean()


def _worker(rank: int, store_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    try:
        model = DistributedDataParallel(_model())
        inputs = _inputs()
        first, second = (inputs[rows] for rows in ROWS[rank])
        weights = global_mean_weights(torch.tensor([len(first), len(second)]))
        loss = weights[0] * _mean(model, first) + weights[1] * _mean(model, second)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        torch.save({"weights": weights, "grads": grads}, f"{results}.{rank}")
        dist.barrier()  # as Distributed.settle() does before a process ends
    finally:
        dist.destroy_process_group()


def test_the_processes_gradient_is_the_mean_over_all_their_rows(tmp_path: Path) -> None:
    results = str(tmp_path / "grads")
    mp.spawn(_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
    model, inputs = _model(), _inputs()
    (_mean(model, inputs[0:4]) + _mean(model, inputs[4:6])).backward()
    expected = [p.grad for p in model.parameters()]
    for rank, weights in ((0, [1.5, 0.0]), (1, [0.5, 2.0])):  # W·n/N
        saved = torch.load(f"{results}.{rank}", weights_only=True)
        assert saved["weights"].tolist() == weights
        for grad, want in zip(saved["grads"], expected, strict=True):
            torch.testing.assert_close(grad, want)


# Triplet-KD, 2 images per process: process 0's are one class (no row has a negative),
# process 1's two classes (each row's one negative is the other row).
TRIPLET_LABELS = {0: [0, 0], 1: [0, 1]}


def _triplet_models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), nn.Sequential(
        nn.Flatten(), nn.Linear(12, 2)
    )


def _triplet_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    return images[2 * rank : 2 * rank + 2], torch.tensor(TRIPLET_LABELS[rank])


def _triplet_step(student: nn.Module, teacher: nn.Module, rank: int, weight: float = 2.0):
    method = TripletKD(TripletMethod(triplet_weight=weight), student, teacher)
    return method.step(*_triplet_batch(rank), TrainProgress(epoch=0, epochs=1))


def _triplet_worker(rank: int, store_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    try:
        student, teacher = _triplet_models()
        replica = DistributedDataParallel(student)  # alive until after backward: its hooks
        output = _triplet_step(replica, teacher, rank)
        output.loss.backward()  # the replica's hooks average the gradients
        grads = [p.grad for p in student.parameters()]
        torch.save({"grads": grads, "triplet": output.parts["triplet"]}, f"{results}.{rank}")
        dist.barrier()  # as Distributed.settle() does before a process ends
    finally:
        dist.destroy_process_group()


def test_triplet_kd_under_two_processes_is_the_mean_over_all_rows_with_a_negative(
    tmp_path: Path,
) -> None:
    """Unweighted, process 1's triplet counted half, as if process 0's rows had one of 0."""
    results = str(tmp_path / "grads")
    mp.spawn(_triplet_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
    student, teacher = _triplet_models()
    assert TripletMethod().triplet_weight == 2.0
    # CE and KL: the mean of the two processes' means; the triplet: the mean over process
    # 1's rows, the only ones with a negative, at full weight, not half.
    first, second = _triplet_step(student, teacher, 0), _triplet_step(student, teacher, 1, 4.0)
    assert first.parts["triplet"] == 0 and second.parts["triplet"] > 0
    ((first.loss + second.loss) / 2).backward()
    expected = [p.grad for p in student.parameters()]
    saved = [torch.load(f"{results}.{rank}", weights_only=True) for rank in (0, 1)]
    for grads in (each["grads"] for each in saved):
        for grad, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(grad, want)
    # The logged part, averaged over the processes as an epoch's figures are, is that mean
    # too (unweighted, it read half of it).
    logged = (saved[0]["triplet"] + saved[1]["triplet"]) / 2
    torch.testing.assert_close(logged, second.parts["triplet"])


def test_one_process_weighs_each_term_by_one() -> None:
    assert global_mean_weights(torch.tensor([3, 0])).tolist() == [1.0, 1.0]
