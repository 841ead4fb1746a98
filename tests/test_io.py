"""Atomic writes of the run's records."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from compressor.io import (
    WriteFailed,
    loads_json,
    remove_scratch_files,
    save_torch,
    strict_json,
    write_json,
    write_text,
)
from tests.disk_full import file_size_limit, needs_file_size_limits
from tests.signal_helpers import needs_posix_signals


def test_json_is_strict_non_finite_numbers_become_null(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json(path, {"parity": {"max_abs_diff": float("inf"), "top1": [float("nan"), 1.5]}})
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} in {text}")

    assert json.loads(text, parse_constant=strict) == {
        "parity": {"max_abs_diff": None, "top1": [None, 1.5]}
    }


class _CtrlCWhileSaved:
    """Pickled inside torch.save: a Ctrl-C typed while the checkpoint is being written."""

    def __reduce__(self) -> tuple:
        os.kill(os.getpid(), signal.SIGINT)
        return (dict, ())


def test_a_metrics_line_is_strict_json_on_one_line() -> None:
    """metrics.jsonl is read line by line by jq and pandas: a diverged student's test loss
    written as NaN made the line unreadable to them."""
    line = strict_json({"epoch": 3, "test_loss": float("nan"), "stat_beta": float("-inf")})
    assert line == '{"epoch": 3, "test_loss": null, "stat_beta": null}'


@needs_posix_signals
def test_a_ctrl_c_while_a_checkpoint_is_written_stops_after_it_is_whole(tmp_path: Path) -> None:
    """torch.save writes through C++: an interrupt raised inside it aborts the process. It is
    acted on once the file is in place, as the KeyboardInterrupt the caller handles."""
    path = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        save_torch(path, {"epoch": 3, "weights": torch.ones(2), "marker": _CtrlCWhileSaved()})
    saved = torch.load(path, weights_only=False)
    assert saved["epoch"] == 3 and torch.equal(saved["weights"], torch.ones(2))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("inside", ["x.json", "sub/x.json"])
def test_a_file_where_a_folder_should_be_is_named(tmp_path: Path, inside: str) -> None:
    """mkdir says 'File exists' (or 'Not a directory') without naming the file in the way;
    `compress recipe schema -o r20.yaml/x.json` printed just that."""
    (tmp_path / "r20.yaml").write_text("student: {arch: resnet20}\n")
    with pytest.raises(WriteFailed) as caught:
        write_text(tmp_path / "r20.yaml" / inside, "{}")
    assert caught.value.strerror == f"{tmp_path / 'r20.yaml'} is a file, not a folder"
    assert (tmp_path / "r20.yaml").read_text() == "student: {arch: resnet20}\n"


@needs_file_size_limits
@pytest.mark.parametrize("save", ["torch", "json"])
def test_a_write_that_fails_names_the_file_and_leaves_the_old_one_whole(
    tmp_path: Path, save: str
) -> None:
    """torch.save writing into the file itself turned EFBIG or ENOSPC into "RuntimeError:
    unexpected pos", reported as a crash; both writers now say why, as bad input does."""
    path = tmp_path / "last.pt"
    path.write_bytes(b"the checkpoint before")
    big = torch.zeros(4096)  # 16 KiB as float32, 4 KiB allowed
    with file_size_limit(4096), pytest.raises(WriteFailed) as caught:
        if save == "torch":
            save_torch(path, {"weights": big})
        else:
            write_json(path, {"weights": big.tolist()})
    assert str(caught.value) == (
        f"{path}: cannot write it (File too large); the file is larger than this process may "
        "write (see `ulimit -f`)"
    )
    assert path.read_bytes() == b"the checkpoint before"
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "reason"),
    [("[" * 100_000, "nested too deeply to read"), ("9" * 5000, "Exceeds the limit")],
)
def test_json_that_cannot_be_read_is_a_value_error(text: str, reason: str) -> None:
    """The parser's RecursionError escaped every `except ValueError` as a crash."""
    with pytest.raises(ValueError, match=reason):
        loads_json(text)
    assert loads_json('{"epoch": 3}') == {"epoch": 3}


def test_scratch_files_of_killed_writes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    """A write killed before its rename leaves `.NAME.<8 random>.tmp` (a whole checkpoint);
    the run's next claim removes those, and only those."""
    left = tmp_path / ".last.pt.k2_9xq0a.tmp"
    left.write_bytes(b"a checkpoint")
    kept = [tmp_path / name for name in ("notes.tmp", ".x.tmp", ".last.pt.short.tmp")]
    for path in kept:
        path.write_text("the user's")
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()
    remove_scratch_files(tmp_path)
    assert not left.exists()
    assert all(path.exists() for path in kept) and (tmp_path / ".dir.abcdefgh.tmp").is_dir()
    remove_scratch_files(tmp_path / "no such folder")  # nothing to remove
