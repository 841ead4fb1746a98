"""What resuming a run says and checks (compressor/engine/resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.engine.resume import check_checkpoint_is_the_runs, interrupted_message
from compressor.errors import UserError
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
    # "--resume added" to a launch that had --overwrite was refused as a contradiction.
    assert torchrun.endswith(
        "with torchrun and its options as before, running `-m compressor train r.yaml --resume`"
    )
    spaced = interrupted_message(run, "my recipe.yaml", distill=False, torchrun=False)
    assert spaced.endswith("compress train 'my recipe.yaml' --resume")


@pytest.mark.parametrize(
    ("saved", "recorded"),
    [("a" * 32, "a" * 32), (None, "a" * 32), ("a" * 32, None), (None, None)],
    ids=["same-run", "checkpoint-before-ids", "manifest-before-ids", "neither"],
)
def test_a_checkpoint_is_the_runs_unless_both_ids_say_otherwise(
    tmp_path: Path, saved: str | None, recorded: str | None
) -> None:
    """Runs from before ids, and a run whose manifest was lost, still resume."""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    if recorded is not None:
        run.manifest.write_text(json.dumps({"status": "interrupted", "run_id": recorded}))
    check_checkpoint_is_the_runs(run, saved)
    if saved is not None and recorded is not None:
        with pytest.raises(UserError, match="saved by another run"):
            check_checkpoint_is_the_runs(run, "b" * 32)
