"""Resumable training state, saved atomically at every epoch boundary.

Only tensors and plain Python containers go in, so the file loads with
`torch.load(weights_only=True)`: resuming never executes code from disk. Shuffling and
augmentation are a pure function of (seed, epoch), so the RNG states saved here (one per
process under torchrun) are all that is needed to continue exactly where an interrupted run
stopped; except in bank mode, whose bank of boundary samples is not saved
(compressor/methods/bank.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.engine.distributed import Distributed
from compressor.errors import UserError, short_reason
from compressor.io import WriteFailed, previous_of, save_torch
from compressor.models import tensor_problem


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def every_rank_rng_state(distributed: Distributed, device: torch.device) -> dict[str, Any]:
    """The checkpoint's RNG entries: `rng`, this process's state (rank 0's, as it saves), and
    under torchrun `rng_ranks`, every process's in rank order. Each process draws its own
    random numbers (AMKD's attack targets for its shard), so a resumed run continues exactly
    only if each process gets its own state back."""
    state = rng_state(device)
    if not distributed.enabled:
        return {"rng": state}
    by_kind = {kind: distributed.gather(value, device) for kind, value in state.items()}
    ranks = [
        {kind: by_kind[kind][rank] for kind in state} for rank in range(distributed.world_size)
    ]
    return {"rng": state, "rng_ranks": ranks}


def restore_every_rank_rng_state(
    checkpoint: dict[str, Any], distributed: Distributed, device: torch.device, seed: int
) -> None:
    """This process's RNG state from the checkpoint. Saved by another process count, where an
    exact continuation is not possible: rank 0's (`rng`) in one process, and under torchrun
    a stream of each process's own from `seed` (`Distributed.seed_own_stream`), not rank 0's
    on every process."""
    ranks = checkpoint.get("rng_ranks")
    if distributed.enabled and ranks is not None and len(ranks) == distributed.world_size:
        restore_rng_state(ranks[distributed.rank], device)
    else:
        restore_rng_state(checkpoint["rng"], device)
        distributed.seed_own_stream(seed, after_epoch=int(checkpoint["epoch"]))


_COUNT_KEYS = ("from_epoch", "processes")


def process_counts(
    state: dict[str, Any] | None, world_size: int, epochs: int
) -> list[dict[str, int]]:
    """How many processes trained the run from which epoch on, with this start added unless
    it trains no epoch (a finished run writes its results again): [{"from_epoch": 1,
    "processes": 2}, ...]. Kept in every checkpoint and in the manifest because results depend
    on the count (each process's random stream and batch-norm batches), and a resume under
    another count continues only approximately."""
    if state is None:
        return [{"from_epoch": 1, "processes": world_size}]
    history = state.get("process_counts")
    well_formed = isinstance(history, list) and all(
        isinstance(entry, dict) and all(type(entry.get(key)) is int for key in _COUNT_KEYS)
        for entry in history
    )
    if not (well_formed and history):  # a checkpoint from before the history
        ranks = state.get("rng_ranks")
        history = [{"from_epoch": 1, "processes": len(ranks) if isinstance(ranks, list) else 1}]
    if history[-1]["processes"] == world_size or int(state["epoch"]) >= epochs:
        return history
    return [*history, {"from_epoch": int(state["epoch"]) + 1, "processes": world_size}]


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `path` atomically, keeping the checkpoint it replaces as `previous-<name>`.

    Atomic writes already rule out a half-written file from a kill; the previous copy covers
    what they cannot: a file damaged later on disk, or by hand. A save that fails (a full
    disk) puts the checkpoint it rotated out back, so the run resumes from `path` as usual.
    """
    previous = previous_of(path)
    rotated = path.exists()
    if rotated:
        try:
            path.replace(previous)
        except OSError as error:
            raise WriteFailed(path, error) from error
    try:
        save_torch(path, state)
    except BaseException:
        # Not written (a full disk, out of memory serialising it): the rotated one goes back.
        # A Ctrl-C is acted on only once the new file is in place, which then stays.
        if rotated and not path.exists():
            previous.replace(path)
        raise


def mismatch(state: dict[str, Any], student: nn.Module) -> str | None:
    """Why a checkpoint that loaded cannot be this run's training state, or None.

    Damaged bytes can still unpickle: a renamed key, a lost entry. Restoring such a state
    would crash the resume (every time, since the same file is read again), so it counts as
    damage instead, and the checkpoint before it is used. The recipe check has already
    ruled out a changed student, so a mismatch here is damage, not a new model.
    """
    weights, expected = state.get("student"), student.state_dict()
    if not isinstance(weights, dict) or weights.keys() != expected.keys():
        return "its student weights name other tensors than the student's"
    for name, tensor in expected.items():
        if not isinstance(weights[name], torch.Tensor) or weights[name].shape != tensor.shape:
            return f"its student weight {name} is not a tensor of shape {tuple(tensor.shape)}"
        problem = tensor_problem(weights[name], tensor)
        if problem is not None:
            return f"its student weight {name} is {problem}"
    optimizer = state.get("optimizer")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    per_parameter = optimizer.get("state") if isinstance(optimizer, dict) else None
    if not isinstance(groups, list) or not isinstance(per_parameter, dict):
        return "its optimizer state is incomplete"
    shapes = [parameter.shape for parameter in student.parameters()]
    indices = [i for group in groups if isinstance(group, dict) for i in group.get("params", ())]
    if sorted(indices) != list(range(len(shapes))):
        return "its optimizer state covers other parameters than the student's"
    for index, entries in per_parameter.items():
        buffers = entries.values() if isinstance(entries, dict) else ()
        if index not in range(len(shapes)) or any(
            isinstance(buffer, torch.Tensor) and buffer.dim() > 0 and buffer.shape != shapes[index]
            for buffer in buffers
        ):
            return "its optimizer state does not fit the student's parameters"
    rng = state.get("rng")
    if not isinstance(state.get("scaler"), dict) or not isinstance(rng, dict):
        return "its grad-scaler or random-number state is missing"
    ranks = state.get("rng_ranks", [])  # torchrun's: each process restores its own
    epoch = state.get("epoch")
    if not isinstance(ranks, list) or not all(_restorable(r) for r in [rng, *ranks]):
        return "its random-number state cannot be restored"
    if type(epoch) is not int or epoch < 0:
        return "its epoch is not a count of epochs"
    return None


def _restorable(rng: object) -> bool:
    """Would restore_rng_state take it? torch.set_rng_state takes a byte tensor of the CPU
    generator's size only, and the CUDA one a byte tensor."""
    if not isinstance(rng, dict):
        return False
    cpu, cuda, generator = rng.get("cpu"), rng.get("cuda"), torch.get_rng_state()
    return (
        isinstance(cpu, torch.Tensor)
        and cpu.dtype == generator.dtype
        and cpu.shape == generator.shape
        and (cuda is None or (isinstance(cuda, torch.Tensor) and cuda.dtype == torch.uint8))
    )


def _read(path: Path, fits: Callable[[dict[str, Any]], str | None]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except PermissionError:
        raise UserError(f"{path}: not readable (permission denied)") from None
    except Exception as error:
        # Damaged bytes surface as whatever the zip or pickle reader trips on first
        # (RuntimeError, KeyError, OSError, EOFError, ...): all of them mean the same here.
        raise UserError(f"{path}: damaged or truncated ({short_reason(error)})") from None
    if not isinstance(state, dict) or "epoch" not in state or "student" not in state:
        raise UserError(f"{path}: not a compressor training checkpoint")
    reason = fits(state)
    if reason is not None:
        raise UserError(f"{path}: damaged ({reason})")
    return state


def saved_run_id(path: Path) -> str | None:
    """The run id a checkpoint carries, read without loading its tensors, so that a resume
    can refuse another run's checkpoint before minutes of data loading; None when it has
    none or cannot be read (the full load decides what to do with that file)."""
    run_id = _saved_field(path, "run_id")
    return run_id if isinstance(run_id, str) else None


def saved_epoch(path: Path) -> int | None:
    """The epoch a checkpoint was saved after, read as `saved_run_id` reads its run id: a
    completed run whose last checkpoint is its last epoch has nothing left to train."""
    epoch = _saved_field(path, "epoch")
    return epoch if isinstance(epoch, int) else None


def _saved_field(path: Path, key: str) -> object:
    """One entry of a checkpoint, its tensors memory-mapped rather than read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, damaged, not a zip file: for load_checkpoint to say so
        return None
    return state.get(key) if isinstance(state, dict) else None


def several_machines() -> bool:
    """Under torchrun on more than one machine: its processes outnumber this machine's."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        return False
    return world > local


def load_checkpoint(
    path: Path,
    warn: Callable[[str], None],
    fits: Callable[[dict[str, Any]], str | None] = lambda state: None,
    *,
    set_aside: bool = True,
) -> dict[str, Any]:
    """Load the newest good checkpoint: `path`, else the one it replaced (with a warning).
    Good means it loads and `fits` finds nothing wrong with it (see `mismatch`).

    A damaged `path` is set aside as `damaged-<name>` once the previous one has loaded: left
    in place, the next save would rotate it into `previous-<name>` over the good copy, and a
    second damage would leave nothing to resume from. Every process of a multi-process run
    loads the checkpoint, and only one (`set_aside`) moves it: two renaming one file, the
    second one found it gone and crashed.
    """
    previous = previous_of(path)
    if not path.exists() and not previous.exists():
        if several_machines():
            raise UserError(
                f"{path}: no checkpoint to resume from on this machine "
                f"({socket.gethostname()}); a run on several machines resumes only where every "
                "one of them reads the same run directory: put output.dir on a file system "
                "they share"
            )
        raise UserError(f"{path}: no checkpoint to resume from; start without --resume")
    try:
        return _read(path, fits)
    except UserError as error:
        if not previous.exists():
            raise UserError(
                f"cannot resume: {error.lines[0]}, and no earlier checkpoint is left; start "
                "over with --overwrite"
            ) from None
        damaged = error.lines[0]
    try:
        state = _read(previous, fits)
    except UserError as error:
        raise UserError(
            f"cannot resume: {error.lines[0]}, and {path.name} could not be read either; start "
            "over with --overwrite"
        ) from None
    aside = ""
    if set_aside and path.exists():
        path.replace(path.with_name(f"damaged-{path.name}"))
        aside = f" ({path.name} set aside as damaged-{path.name})"
    warn(f"{damaged}; resuming from the checkpoint before it, {previous.name}{aside}")
    return state
