"""`torchrun` with 2 CPU processes (gloo) trains the same student as 1 process with the same
global batch: data sharding, gradient averaging and metric reduction add up to one run.

A batch-norm-free student keeps the comparison exact: under DDP each process normalises its
own half batch (SyncBatchNorm exists only for GPUs), so a BN model differs by design.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from compressor.engine.distributed import Distributed, process_group_backend
from tests.cli_helpers import run_cli


def image_folder(root: Path) -> Path:
    """Two classes of 32×32 RGB noise images with a class-dependent tint: learnable, tiny."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 48), ("val", 16)):
        for label, tint in (("red", (90, 0, 0)), ("blue", (0, 0, 90))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                noise = torch.randint(0, 160, (32, 32, 3), generator=generator, dtype=torch.uint8)
                pixels = (noise + torch.tensor(tint, dtype=torch.uint8)).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_two_processes_train_the_same_student_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = {
        "student": {"arch": "squeezenet1_1", "kwargs": {"dropout": 0.0}},
        "data": {"name": "imagefolder", "root": str(image_folder(tmp_path / "data"))},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "device": "cpu",
            "deterministic": True,
            "optimizer": {"name": "sgd", "lr": 0.01},
        },
    }
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump({**recipe, "output": {"dir": str(tmp_path)}}))
    assert run_cli(capsys, "train", str(single)).code == 0

    double = tmp_path / "double.yaml"
    double.write_text(yaml.safe_dump({**recipe, "output": {"dir": str(tmp_path)}}))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "compressor", "train", str(double),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    first = torch.load(tmp_path / "single" / "student.pt", weights_only=True)["state_dict"]
    second = torch.load(tmp_path / "double" / "student.pt", weights_only=True)["state_dict"]
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=1e-4, atol=1e-6, msg=key)
    one = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").open()]
    two = [json.loads(line) for line in (tmp_path / "double" / "metrics.jsonl").open()]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["train_accuracy"] == pytest.approx(a["train_accuracy"])
        assert b["test_accuracy"] == pytest.approx(a["test_accuracy"])


def test_backend_follows_the_recipes_device_not_the_machine() -> None:
    """A CPU run on a GPU machine must use gloo: NCCL cannot reduce CPU tensors."""
    assert process_group_backend(torch.device("cpu")) == "gloo"
    assert process_group_backend(torch.device("cuda")) == "nccl"


def test_each_rank_trains_on_the_gpu_of_its_local_rank() -> None:
    rank_one = Distributed(rank=1, world_size=2, local_rank=1)
    assert rank_one.device_for(torch.device("cuda")) == torch.device("cuda", 1)
    assert rank_one.device_for(torch.device("cpu")) == torch.device("cpu")
    assert Distributed().device_for(torch.device("cuda")) == torch.device("cuda")
