"""compressor/cli.py helpers that shape what the user reads after a run stops or compares."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.cli import _interrupted_message, _signed
from compressor.rundir import RunDir


def test_an_interrupt_before_any_checkpoint_says_start_again_not_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    run = RunDir(tmp_path / "run")
    message = _interrupted_message(run, Path("r.yaml"), distill=True)
    assert "compress distill r.yaml --overwrite" in message and "--resume" not in message
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"")
    message = _interrupted_message(run, Path("r.yaml"), distill=False)
    assert message.endswith("compress train r.yaml --resume")
    monkeypatch.setenv("RANK", "0")
    assert "the same torchrun command" in _interrupted_message(run, Path("r.yaml"), False)


def test_signed_points_never_read_minus_zero() -> None:
    assert [_signed(v) for v in (-0.0, -0.001, 0.126, -1.5)] == ["+0.00", "+0.00", "+0.13", "-1.50"]
