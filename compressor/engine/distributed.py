"""Multi-process training under `torchrun`: one process per GPU (or CPU worker).

`torchrun --nproc_per_node N -m compressor distill recipe.yaml` sets RANK, WORLD_SIZE and
LOCAL_RANK; without them everything here is a no-op for a single process. The student is
wrapped in DistributedDataParallel by the run; the frozen teacher never is (it has no
gradients to synchronise). `train.batch_size` stays the global batch, split evenly over the
processes, so a recipe means the same optimisation at any process count.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from compressor.errors import OnlyHere, SaidElsewhere, UserError, short_reason

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and talks to the user."""
        return self.rank == 0

    def per_rank_batch(self, batch_size: int) -> int:
        if batch_size % self.world_size:
            raise UserError(
                f"train.batch_size {batch_size} does not split evenly over {self.world_size} "
                "processes; use a multiple of the process count (it is the global batch)"
            )
        if batch_size < 2 * self.world_size:  # training batch-norm cannot normalise one image
            raise UserError(
                f"train.batch_size {batch_size} gives each of {self.world_size} processes one "
                f"image per step, and batch norm needs 2; use at least {2 * self.world_size}"
            )
        return batch_size // self.world_size

    def gather_objects(self, value: T) -> list[T]:
        """Every process's `value` (any picklable object), in rank order; `[value]` alone
        outside torchrun."""
        if not self.enabled:
            return [value]
        everyone: list[T] = [value] * self.world_size
        dist.all_gather_object(everyone, value)
        return everyone

    def gather(self, values: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """Every process's `values` (same shape and dtype on each), in rank order, on the CPU.
        Sent through `device`, so NCCL runs carry them too."""
        if not self.enabled:
            return [values]
        sent = values.to(device)
        received = [torch.empty_like(sent) for _ in range(self.world_size)]
        dist.all_gather(received, sent)
        return [value.cpu() for value in received]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over all processes (a copy; the input is left as it is)."""
        if not self.enabled:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total

    def average_buffers(self, module: nn.Module) -> None:
        """Make every process's BatchNorm statistics equal: running mean and variance averaged
        over the processes, the batch counter taken from rank 0. Other buffers are left alone
        (averaging, say, spectral norm's vectors would break them).

        Why: buffers are not synchronised during the epoch (see `ddp_wrap`), so each process's
        statistics describe only its own shard. Called once per epoch, at a point every process
        reaches, it gives all of them statistics of the whole data set (the mean of the shards'
        variances, leaving out the small spread between the shards' means), so they evaluate the
        same model and rank 0 saves it.
        """
        if not self.enabled:
            return
        for norm in module.modules():
            if not isinstance(norm, _BatchNorm):
                continue
            if norm.running_mean is None or norm.running_var is None:
                continue
            for statistic in (norm.running_mean, norm.running_var):
                dist.all_reduce(statistic)
                statistic.div_(self.world_size)
            if norm.num_batches_tracked is not None:
                dist.broadcast(norm.num_batches_tracked, src=0)

    def stop_together(self, error: Exception | None) -> None:
        """Raise on every process if any one of them hit `error` (a step only some ranks take,
        such as rank 0 claiming the run directory, or a file one node lacks): the others
        would otherwise wait for it in their next collective and die with a broken-connection
        traceback, or, before the first collective, wait for ever.

        One line per machine: a refusal is printed by the lowest process that hit it there
        (the others hit the same, reading the same files); where no process of a machine
        failed, its lowest one names the process that did and why, since that process's line
        went to another machine's terminal. Over gloo, on the CPU, whatever the training
        device: a process that failed before it knew the recipe's device takes part too."""
        if not self.enabled:
            if error is not None:
                raise error
            return
        said = None if error is None else _said(error)
        machine = self.rank - self.local_rank  # torchrun numbers a machine's ranks in a row
        everyone = self.gather_objects((machine, said))
        peers = [(rank, there, text) for rank, (there, text) in enumerate(everyone)]
        failed = [(rank, there, text) for rank, there, text in peers if text is not None]
        if not failed:
            return
        self.settle()  # every process raises below
        failed_here = [(rank, text) for rank, there, text in failed if there == machine]
        if error is not None:
            if not isinstance(error, UserError) or self.local_rank == 0:
                raise error  # a crash: every process's traceback; local rank 0 always speaks
            if any(rank < self.rank and text == said for rank, text in failed_here):
                raise SaidElsewhere(*error.lines) from error
            raise OnlyHere(*error.lines) from error
        quiet_here = [rank for rank, there, text in peers if there == machine and text is None]
        rank, _, text = failed[0]
        stopped = f"process {self.rank} stopped: process {rank} could not go on: {text}"
        if failed_here or self.rank != min(quiet_here):
            raise SaidElsewhere(stopped)  # silent, but the manifest's reason all the same
        raise UserError(stopped)

    def together(self, step: Callable[[], T]) -> T:
        """Run `step` here; if it fails on any process, every process stops with
        `stop_together`. For the steps that can fail on some ranks only. Any exception, not
        only a refusal: a crash (a folder this node may not list) on one process would
        otherwise leave the others waiting in their next collective."""
        error: Exception | None = None
        try:
            value = step()
        except Exception as failed:
            error = failed
        self.stop_together(error)
        return value

    def take_device(self, device: torch.device) -> torch.device:
        """This process's device, made current: under torchrun each process takes the GPU of
        its LOCAL_RANK, whatever index the recipe names (a bare `cuda` would put every rank's
        DDP replica on GPU 0); one process per GPU is the torchrun model."""
        if not (self.enabled and device.type == "cuda"):
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"torchrun started process {self.local_rank} on this machine but only "
                f"{torch.cuda.device_count()} GPU(s) are visible; use --nproc_per_node "
                f"{torch.cuda.device_count()} or fewer (one process per GPU)"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def seed_own_stream(self, seed: int, after_epoch: int = 0) -> None:
        """Give this process a random stream of its own, a pure function of (seed, rank,
        epoch), from here on.

        Why: every process starts from the recipe's seed, so that all build the same models.
        Drawn on from there, they would make the same random choices for different images
        (AMKD's attack targets, interpolation partners and random negatives, dropout masks):
        draws correlated across processes, fewer independent ones than the run seems to
        make. A single process keeps the recipe's stream, so its results do not change."""
        if not self.enabled:
            return
        mixed = np.random.SeedSequence([seed, self.rank, after_epoch]).generate_state(
            1, dtype=np.uint64
        )[0]
        torch.manual_seed(int(mixed >> np.uint64(1)))

    def settle(self) -> None:
        """Wait for every process at a point all of them reach just before they end.

        Why: gloo's worker threads release a collective's tensors after its result is back,
        and that takes the GIL. A process that ends at once (rank 1 writes nothing) could
        start shutting its interpreter down first, which ends a thread waiting for the GIL
        inside a C++ destructor: SIGABRT, "terminate called without an active exception",
        and torchrun reported a completed run as failed (1 run in 6 on 2 CPU
        processes). Destroying the process group does not stop those threads:
        DistributedDataParallel keeps the group alive. The barrier, over gloo like the
        object collectives and holding no tensors of its own, lets go of the GIL while it
        waits for the other processes: time enough for the threads to finish."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


# gloo's words when the process at the other end of a connection is gone.
_PEER_GONE = ("Connection reset by peer", "Connection closed by peer")


def lost_process(error: BaseException) -> str | None:
    """How a collective said that another process of the run is gone, or None when `error`
    says nothing of the kind: gloo in a plain RuntimeError, NCCL and the rendezvous store in
    a DistError."""
    said = next((words for words in _PEER_GONE if words in str(error)), None)
    if said is None and isinstance(error, dist.DistError):
        said = short_reason(error)
    return said


def _said(error: Exception) -> str:
    """What a failed process tells the others: a refusal's text, a crash's type and gist."""
    return "\n".join(error.lines) if isinstance(error, UserError) else short_reason(error)


def join_process_group() -> Distributed:
    """Join the process group that torchrun describes in the environment, if any (again: a
    process joins once, whoever asks).

    First thing, before the recipe is read: a node that stopped on its own copy of the recipe
    before joining left the others waiting in init_process_group for its timeout (30
    minutes), while a process in the group can stop them all (`together`). torch's default
    backends, so the choice does not hang on the recipe: gloo for CPU tensors, and NCCL for
    CUDA ones where this machine has GPUs (NCCL cannot reduce CPU tensors, so a CPU run on a
    GPU machine still goes over gloo).
    """
    world_size, rank, local_rank = _torchrun_environment()
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group()
    return Distributed(rank, world_size, local_rank)


_TORCHRUN_SETS = ("RANK", "MASTER_ADDR", "MASTER_PORT")


def _torchrun_environment() -> tuple[int, int, int]:
    """(WORLD_SIZE, RANK, LOCAL_RANK) as torchrun sets them; (1, 0, 0) outside torchrun.

    A WORLD_SIZE left in a shell, or set by hand without the rest, is bad input: said in one
    line rather than as a KeyError from here or a rendezvous error from torch.
    """
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return 1, 0, 0
        missing = [name for name in _TORCHRUN_SETS if not os.environ.get(name)]
        if missing:
            raise UserError(
                f"WORLD_SIZE={world_size} is set but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: start "
                "several processes with torchrun, which sets them all, or unset WORLD_SIZE"
            )
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        port = int(os.environ["MASTER_PORT"])
    except ValueError:
        given = ", ".join(f"{name}={os.environ.get(name)!r}" for name in (*names, "MASTER_PORT"))
        raise UserError(
            f"torchrun's environment holds a value that is not a whole number ({given}); "
            "start the run with torchrun, or unset them"
        ) from None
    # Out of range, torch's rendezvous fails on the port, or waits for ever on the rank.
    if not (0 <= rank < world_size and local_rank >= 0):
        raise UserError(
            f"RANK={rank}, LOCAL_RANK={local_rank} with WORLD_SIZE={world_size}: a rank is "
            f"0 to {world_size - 1}; start the run with torchrun, or unset them"
        )
    if not 0 < port < 65536:
        raise UserError(
            f"MASTER_PORT={port} is not a port (1 to 65535); start the run with torchrun, or "
            "unset them"
        )
    return world_size, rank, local_rank


def ddp_wrap(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """`module` in DistributedDataParallel, without the per-forward buffer broadcast.

    That broadcast is a collective in every forward pass, and BSS/AMKD run a second pass only
    on processes whose batch gave boundary samples, so the processes' collectives would stop
    pairing up and training would hang. BatchNorm statistics are synchronised once per epoch
    instead (`Distributed.average_buffers`); at start every process holds the same model
    anyway (same seed, or the same checkpoint on resume). Newer torch names the switch
    `forward_sync_buffers` and warns about the old `broadcast_buffers`.
    """
    device_ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)
    return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)
