"""Resumable training state, saved atomically at every epoch boundary.

Only tensors and plain Python containers go in, so the file loads with
`torch.load(weights_only=True)`: resuming never executes code from disk. Shuffling and
augmentation are a pure function of (seed, epoch), so the RNG states saved here are all that
is needed to continue exactly where an interrupted run stopped.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from compressor.errors import UserError
from compressor.io import save_torch


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    save_torch(path, state)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a training checkpoint; a damaged file is the user's to know about, not a traceback."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no checkpoint to resume from; start without --resume") from None
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
    ) as error:
        raise UserError(
            f"{path}: checkpoint is damaged or truncated ({type(error).__name__}); "
            "delete it to start over, or restore it from a backup"
        ) from None
    if not isinstance(state, dict) or "epoch" not in state or "student" not in state:
        raise UserError(f"{path}: not a compressor training checkpoint")
    return state
