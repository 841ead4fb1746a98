"""What resuming a run says and checks (compressor/engine/resume.py)."""

from __future__ import annotations

from pathlib import Path

from compressor.engine.resume import interrupted_message
from compressor.rundir import RunDir


def test_an_interrupt_before_any_checkpoint_says_start_again_not_resume(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    message = interrupted_message(run, "r.yaml", distill=True, torchrun=False)
    assert "compress distill r.yaml --overwrite" in message and "--resume" not in message
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"")
    message = interrupted_message(run, "r.yaml", distill=False, torchrun=False)
    assert message.endswith("compress train r.yaml --resume")
    torchrun = interrupted_message(run, "r.yaml", distill=False, torchrun=True)
    assert torchrun.endswith("with the same torchrun command, --resume added")
    spaced = interrupted_message(run, "my recipe.yaml", distill=False, torchrun=False)
    assert spaced.endswith("compress train 'my recipe.yaml' --resume")
