"""Training checkpoints: however a file is damaged, resuming falls back or says what to do."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from compressor.engine.checkpoint import (
    load_checkpoint,
    process_counts,
    restore_every_rank_rng_state,
    save_checkpoint,
    saved_run_id,
)
from compressor.engine.distributed import Distributed
from compressor.errors import UserError
from compressor.io import previous_of


def _state(epoch: int) -> dict[str, object]:
    generator = torch.Generator().manual_seed(epoch)
    return {"epoch": epoch, "student": {"weight": torch.randn(64, 64, generator=generator)}}


def _text(path: Path) -> None:
    path.write_text("junk\n")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _tail_cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


# Each kind of damage trips torch.load differently (KeyError, OSError, RuntimeError, ...).
DAMAGE = [_text, _truncated, _empty, _tail_cut]


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> Path:
    last = tmp_path / "last.pt"
    save_checkpoint(last, _state(1))
    save_checkpoint(last, _state(2))
    assert previous_of(last).exists()
    return last


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda damage: damage.__name__.strip("_"))
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(
    two_checkpoints: Path, damage: Callable[[Path], None]
) -> None:
    damage(two_checkpoints)
    warnings: list[str] = []
    state = load_checkpoint(two_checkpoints, warn=warnings.append)
    assert state["epoch"] == 1
    assert torch.equal(state["student"]["weight"], _state(1)["student"]["weight"])
    assert len(warnings) == 1 and "damaged or truncated" in warnings[0]


def test_the_good_previous_checkpoint_survives_the_saves_after_a_fallback(
    two_checkpoints: Path,
) -> None:
    """The damaged file is set aside, not rotated over the good copy by the next save."""
    _truncated(two_checkpoints)
    load_checkpoint(two_checkpoints, warn=lambda _: None)
    assert (two_checkpoints.parent / "damaged-last.pt").exists()
    save_checkpoint(two_checkpoints, _state(2))
    _text(two_checkpoints)  # damaged again before the next save
    assert load_checkpoint(two_checkpoints, warn=lambda _: None)["epoch"] == 1


def test_only_the_main_process_sets_a_damaged_checkpoint_aside(two_checkpoints: Path) -> None:
    """Every process of a multi-process run resumes from the same file, whichever of them
    reads it first."""
    _truncated(two_checkpoints)
    assert load_checkpoint(two_checkpoints, warn=lambda _: None, set_aside=False)["epoch"] == 1
    assert two_checkpoints.exists()  # for the main process to find, and set aside
    assert load_checkpoint(two_checkpoints, warn=lambda _: None)["epoch"] == 1
    assert not two_checkpoints.exists()
    assert load_checkpoint(two_checkpoints, warn=lambda _: None, set_aside=False)["epoch"] == 1


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda damage: damage.__name__.strip("_"))
def test_with_both_checkpoints_damaged_one_line_says_start_over(
    two_checkpoints: Path, damage: Callable[[Path], None]
) -> None:
    damage(two_checkpoints)
    damage(previous_of(two_checkpoints))
    with pytest.raises(UserError) as refused:
        load_checkpoint(two_checkpoints, warn=lambda _: None)
    assert len(refused.value.lines) == 1
    assert "cannot resume" in refused.value.lines[0]
    assert "--overwrite" in refused.value.lines[0]


def test_a_damaged_only_checkpoint_says_start_over(tmp_path: Path) -> None:
    last = tmp_path / "last.pt"
    save_checkpoint(last, _state(1))
    _text(last)
    with pytest.raises(UserError, match="no earlier checkpoint is left; start over"):
        load_checkpoint(last, warn=lambda _: None)


def test_the_run_id_is_read_without_a_full_load_and_none_when_unreadable(tmp_path: Path) -> None:
    """Read before the data set, to refuse another run's checkpoint early: a missing, damaged
    or id-less file gives None and leaves the verdict to `load_checkpoint`."""
    path = tmp_path / "last.pt"
    assert saved_run_id(path) is None
    torch.save({"epoch": 1, "student": {"w": torch.zeros(3)}, "run_id": "a" * 32}, path)
    assert saved_run_id(path) == "a" * 32
    torch.save({"epoch": 1, "student": {}}, path)
    assert saved_run_id(path) is None
    path.write_bytes(b"not a checkpoint")
    assert saved_run_id(path) is None


def test_the_process_counts_record_each_change_with_its_first_epoch() -> None:
    """A resume under another torchrun process count continues only approximately: the
    history says from which epoch on each count trained."""
    assert process_counts(None, 2, 5) == [{"from_epoch": 1, "processes": 2}]
    two = {"epoch": 3, "process_counts": [{"from_epoch": 1, "processes": 2}]}
    assert process_counts(two, 2, 5) == two["process_counts"]
    assert process_counts(two, 1, 5) == [
        {"from_epoch": 1, "processes": 2},
        {"from_epoch": 4, "processes": 1},
    ]
    # Checkpoints from before the history: the count of the RNG states saved, one per process.
    older = {"epoch": 2, "rng_ranks": [{}, {}, {}]}
    assert process_counts(older, 3, 5) == [{"from_epoch": 1, "processes": 3}]
    assert process_counts({"epoch": 2}, 2, 5)[-1] == {"from_epoch": 3, "processes": 2}
    # A finished run trains no epoch more: its results are written again, its history kept.
    assert process_counts({**two, "epoch": 5}, 1, 5) == two["process_counts"]
    damaged = {"epoch": 2, "process_counts": [{"from_epoch": "1", "processes": 2}, 7]}
    assert process_counts(damaged, 1, 5) == [{"from_epoch": 1, "processes": 1}]


def test_a_checkpoint_of_another_process_count_gives_each_process_a_stream_of_its_own() -> None:
    """Resumed under torchrun from one process's checkpoint, the processes do not all take
    its one RNG state (the same draws for different images); one process does."""
    torch.manual_seed(0)
    saved = {"epoch": 2, "rng": {"cpu": torch.get_rng_state()}}
    expected = torch.rand(4)
    cpu = torch.device("cpu")
    draws = []
    for rank in (0, 1):
        restore_every_rank_rng_state(saved, Distributed(rank, 2), cpu, seed=0)
        draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1])
    restore_every_rank_rng_state(saved, Distributed(), cpu, seed=0)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(
    ("processes", "expected"),
    [
        ({}, "no checkpoint to resume from; start without --resume"),
        ({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}, "start without --resume"),
        (
            {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"},
            f"no checkpoint to resume from on this machine ({socket.gethostname()}); a run on "
            "several machines resumes only where every one of them reads the same run "
            "directory: put output.dir on a file system they share",
        ),
    ],
)
def test_a_machine_without_the_checkpoint_is_told_the_run_directory_must_be_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: dict[str, str], expected: str
) -> None:
    """On several machines "start without --resume" sent the user round: rank 0, on the
    machine that has the run, then refused to start it again."""
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in processes.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as refused:
        load_checkpoint(tmp_path / "last.pt", warn=lambda _: None)
    assert refused.value.lines[0].endswith(expected)
