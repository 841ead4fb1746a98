"""Terms averaged over rows whose count differs between processes: weighted so that DDP's
average of the gradients is the one-process gradient of the mean over all rows."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from compressor.methods.global_mean import global_mean_weights

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


def test_one_process_weighs_each_term_by_one() -> None:
    assert global_mean_weights(torch.tensor([3, 0])).tolist() == [1.0, 1.0]
