"""A run killed with SIGKILL at random points and resumed each time ends with exactly the
student of an uninterrupted run: nothing computed is lost, nothing is computed differently."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.signal_helpers import needs_posix_signals

RECIPE = {
    "student": {"arch": "resnet14"},
    "train": {"epochs": 6, "batch_size": 64, "device": "cpu", "deterministic": True, "seed": 3},
}


def compress(*args: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "compressor", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
    )


def finish(process: subprocess.Popen[bytes]) -> None:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()


def checkpoint_epoch(run: Path) -> int:
    path = run / "checkpoints" / "last.pt"
    if not path.exists():
        return 0
    return torch.load(path, weights_only=True)["epoch"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_and_resume_gives_the_uninterrupted_student(tmp_path: Path) -> None:
    straight = tmp_path / "straight.yaml"
    straight.write_text(yaml.safe_dump({**RECIPE, "output": {"dir": str(tmp_path)}}))
    uninterrupted = compress("train", str(straight))  # one thread each: they run side by side

    killed = tmp_path / "killed.yaml"
    killed.write_text(yaml.safe_dump({**RECIPE, "output": {"dir": str(tmp_path)}}))
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    process = compress("train", str(killed))
    try:
        while kills < 3:
            # Wait until this process has checkpointed an epoch of its own (so every kill lands
            # at a new point of training), then kill at a random moment: mid-epoch,
            # mid-evaluation or mid-write.
            seen = checkpoint_epoch(run) if kills else 0
            deadline = time.monotonic() + 120
            while checkpoint_epoch(run) <= seen and process.poll() is None:
                assert time.monotonic() < deadline, "no new checkpoint appeared"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.8))
            if process.poll() is not None:
                break  # finished before the kill
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            assert not (run / "student.pt").exists() or checkpoint_epoch(run) == 6
            process = compress("train", str(killed), "--resume")
        finish(process)
        finish(uninterrupted)
    finally:  # a failed assertion must not leave either run training on
        for started in (process, uninterrupted):
            started.kill()  # a no-op once it has been waited for
    assert kills >= 2, "the run finished before it could be killed twice; make it longer"

    first = torch.load(tmp_path / "straight" / "student.pt", weights_only=True)["state_dict"]
    second = torch.load(run / "student.pt", weights_only=True)["state_dict"]
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [yaml.safe_load(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]


@needs_posix_signals
def test_ctrl_c_says_how_to_resume_and_marks_the_run_interrupted(tmp_path: Path) -> None:
    recipe = tmp_path / "stopped.yaml"
    train = {**RECIPE["train"], "epochs": 2}  # stopped after the first, resumed for the second
    recipe.write_text(yaml.safe_dump({**RECIPE, "train": train, "output": {"dir": str(tmp_path)}}))
    run = tmp_path / "stopped"
    process = compress("train", str(recipe), stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while checkpoint_epoch(run) < 1:
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130
    # On stderr, so that a terminal shows it with the log (stdout) in a file.
    assert f"compress train {recipe} --resume" in stderr.decode()
    assert "--resume" not in stdout.decode()
    assert "Traceback" not in stderr.decode()
    manifest = yaml.safe_load((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    finish(compress("train", str(recipe), "--resume"))
    assert yaml.safe_load((run / "manifest.json").read_text())["status"] == "completed"


@pytest.mark.skipif(not hasattr(signal, "SIGPIPE"), reason="needs POSIX pipes")
def test_output_into_a_pipe_closed_mid_run_marks_the_run_interrupted(tmp_path: Path) -> None:
    """`compress train r.yaml | head -3`: the reader goes away after the first epoch's line.
    rich ended the command with SystemExit(1), past every handler, and the manifest stayed
    "running"; it is "interrupted", as after a Ctrl-C, and the command ends with 141."""
    recipe = tmp_path / "piped.yaml"
    train = {**RECIPE["train"], "epochs": 2}
    recipe.write_text(yaml.safe_dump({**RECIPE, "train": train, "output": {"dir": str(tmp_path)}}))
    process = compress("train", str(recipe), stdout=subprocess.PIPE)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(b"epoch 1/"):
            break
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 141, stderr.decode()
    assert stderr.decode() == ""
    run = tmp_path / "piped"
    assert yaml.safe_load((run / "manifest.json").read_text())["status"] == "interrupted"
