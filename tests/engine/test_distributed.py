"""`torchrun` with 2 CPU processes (gloo): the same student as 1 process with the same global
batch (data sharding, gradient averaging and metric reduction add up to one run), and AMKD
with a batch-norm student, whose second forward pass only some processes take.

A batch-norm-free student keeps the first comparison exact: under DDP each process normalises
its own half batch (SyncBatchNorm exists only for GPUs), so a BN model differs by design.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from PIL import Image
from torch import nn

from compressor.engine.distributed import Distributed
from compressor.errors import OnlyHere, SaidElsewhere, UserError
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
    done = torchrun("train", double)
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
    # Each process has a random stream of its own (for AMKD's attack targets): the two saved
    # states differ, though neither process drew a number after building the student.
    last = torch.load(tmp_path / "double" / "checkpoints" / "last.pt", weights_only=True)
    assert not torch.equal(last["rng_ranks"][0]["cpu"], last["rng_ranks"][1]["cpu"])


def test_each_process_draws_from_a_stream_of_its_own_and_one_process_from_the_recipes() -> None:
    def draws(distributed: Distributed, after_epoch: int = 0) -> torch.Tensor:
        torch.manual_seed(7)
        distributed.seed_own_stream(7, after_epoch)
        return torch.rand(4)

    alone = draws(Distributed())
    torch.manual_seed(7)
    assert torch.equal(alone, torch.rand(4))
    first, second = draws(Distributed(0, 2)), draws(Distributed(1, 2))
    assert not torch.equal(first, second) and not torch.equal(first, alone)
    assert torch.equal(second, draws(Distributed(1, 2)))  # a function of (seed, rank, epoch)
    assert not torch.equal(second, draws(Distributed(1, 2), after_epoch=3))


def torchrun(
    subcommand: str, recipe: Path, *flags: str, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`compress SUBCOMMAND recipe` in 2 CPU processes; a hang (collectives out of step) fails
    at 240 s. torchrun's scratch folders go next to the recipe, not into the machine's /tmp;
    `pythonpath` is where a recipe's entrypoint module is."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "compressor", subcommand, str(recipe), *flags,
    ]  # fmt: skip
    scratch = recipe.parent / "torchrun-tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    process = subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=env)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: torchrun passes it on to its workers (each in a session of
        # its own), which a killed launcher would leave running.
        process.terminate()
        process.communicate(timeout=120)
        pytest.fail("torchrun hung for 240 s: the processes' collectives fell out of step")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-8 trained briefly on the embedded digits: accurate enough to attack."""
    root = tmp_path_factory.mktemp("teacher")
    recipe = {
        "student": {"arch": "resnet8"},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
        "output": {"dir": str(root), "name": "teacher"},
    }
    (root / "teacher.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run(
        [sys.executable, "-m", "compressor", "train", str(root / "teacher.yaml")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "teacher" / "student.pt"


def distill_amkd_under_torchrun(
    tmp_path: Path, teacher: Path, embedding: str
) -> tuple[Path, list[dict[str, object]]]:
    """AMKD in `embedding` space with a BatchNorm ResNet-8 student, 2 processes, 2 short
    epochs, checked to complete as one run; returns the recipe and the metrics lines."""
    recipe = tmp_path / "amkd.yaml"
    config = {
        "teacher": {"arch": "resnet8", "checkpoint": str(teacher)},
        "student": {"arch": "resnet8"},
        "method": {"name": "amkd", "embedding": embedding},
        "train": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 40, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "run"},
    }
    recipe.write_text(yaml.safe_dump(config))
    done = torchrun("distill", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("reports:") == 1  # rank 0 alone prints the results
    assert "device cpu × 2 processes (torchrun, batch 4 each)," in done.stdout
    assert "Warning" not in done.stderr

    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["processes"] == 2
    assert manifest["command"] == ["compress", "distill", str(recipe)]
    assert metrics[0]["stat_attacked"] > 0 and metrics[0]["loss_triplet"] > 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["results"]["student"]["accuracy"] == pytest.approx(metrics[-1]["test_accuracy"])
    return recipe, metrics


def test_feature_space_amkd_under_torchrun(tmp_path: Path, digits_teacher: Path) -> None:
    """The feature-space triplet must reach the student's features through DDP's forward."""
    distill_amkd_under_torchrun(tmp_path, digits_teacher, "features")


def test_amkd_with_a_batchnorm_student_under_torchrun(tmp_path: Path, digits_teacher: Path) -> None:
    """AMKD's second student pass runs only on processes whose batch gave boundary samples.

    With 4 images per process and a student that starts out mostly wrong, many steps give one
    process boundary samples and the other none; with DDP's per-forward buffer broadcast the
    processes' collectives then fall out of step and the run hangs (checked: it does). Then
    the run is refused a second time, and resumed, in 2 processes.
    """
    recipe, metrics = distill_amkd_under_torchrun(tmp_path, digits_teacher, "softmax")

    # Rank 0 finds the run directory taken; the other process stops with it, not with a
    # broken-connection traceback from its next collective.
    before = {
        name: (tmp_path / "run" / name).read_bytes() for name in ("metrics.jsonl", "student.pt")
    }
    again = torchrun("distill", recipe)
    assert again.returncode == 1  # torchrun's own code when a worker fails (each exits 2)
    for name, content in before.items():
        assert (tmp_path / "run" / name).read_bytes() == content, name
    assert "already holds a completed run" in again.stderr
    assert "Connection closed" not in again.stderr

    # Resumed after epoch 1, it trains the same epoch 2: each process draws its own attack
    # targets, so each must get its own RNG state back, not rank 0's.
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "previous-last.pt").replace(checkpoints / "last.pt")
    resumed = torchrun("distill", recipe, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and "after epoch 1" in resumed.stdout
    timed = ("epoch_seconds", "images_per_second")
    again_metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    for line in (*metrics, *again_metrics):
        for key in timed:
            line.pop(key, None)
    assert again_metrics == metrics
    first = torch.load(io.BytesIO(before["student.pt"]), weights_only=True)["state_dict"]
    second = torch.load(tmp_path / "run" / "student.pt", weights_only=True)["state_dict"]
    for key in first:
        assert torch.equal(first[key], second[key]), key

    # Resumed after epoch 1 by one process: allowed, but said, and recorded.
    (checkpoints / "previous-last.pt").replace(checkpoints / "last.pt")
    alone = subprocess.run(
        [sys.executable, "-m", "compressor", "distill", str(recipe), "--resume"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert (
        f"warning: {tmp_path / 'run'} trained with 2 processes and resumes with 1 process: "
        in alone.stdout + alone.stderr
    )
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["processes"] == 1
    assert manifest["process_counts"] == [
        {"from_epoch": 1, "processes": 2},
        {"from_epoch": 2, "processes": 1},
    ]


def _average_buffers_worker(rank: int, store_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    try:
        model = nn.Sequential(nn.BatchNorm1d(3))
        norm = model[0]
        norm.running_mean.fill_(float(rank))  # 0 on rank 0, 1 on rank 1
        norm.running_var.fill_(1.0 + 2.0 * rank)  # 1 and 3
        norm.num_batches_tracked.fill_(5 + rank)
        model.register_buffer("other", torch.full((2,), float(rank)))  # not BatchNorm's
        Distributed(rank=rank, world_size=2).average_buffers(model)
        torch.save(dict(model.named_buffers()), f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


# Two machines of two processes each; what each process hits in a step run `together`.
_STOP_CASES = {
    "one process fails": [None, "no teacher file here", None, None],
    "every process fails alike": ["bad recipe"] * 4,
    "a machine's second process fails": [None, None, None, "no data here"],
}


def _stop_together_worker(rank: int, store_file: str, results: str) -> None:
    """Every case of _STOP_CASES in one process group (4 processes start in seconds each)."""
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=4)
    try:
        here = Distributed(rank=rank, world_size=4, local_rank=rank % 2)
        for number, hits in enumerate(_STOP_CASES.values()):
            hit = hits[rank]
            try:
                here.stop_together(None if hit is None else UserError(hit))
                outcome = "went on"
            except SaidElsewhere as error:
                outcome = f"silent ({error})"
            except OnlyHere as error:
                outcome = f"says here: {error}"
            except UserError as error:
                outcome = f"says: {error}"
            Path(f"{results}.{number}.{rank}").write_text(outcome)
    finally:
        dist.destroy_process_group()


def test_a_refusal_is_printed_once_per_machine(tmp_path: Path) -> None:
    """The lowest process of a machine that hit a refusal says it, the others are silent
    (LOCAL_RANK 0 prints what it hits; another local rank prints it as OnlyHere); a machine
    where nothing failed names the process that did, from its lowest process."""
    results = str(tmp_path / "outcome")
    mp.spawn(_stop_together_worker, args=(str(tmp_path / "store"), results), nprocs=4, join=True)
    outcomes = {
        case: [Path(f"{results}.{number}.{rank}").read_text() for rank in range(4)]
        for number, case in enumerate(_STOP_CASES)
    }
    assert outcomes["one process fails"] == [
        "silent (process 0 stopped: process 1 could not go on: no teacher file here)",
        "says here: no teacher file here",
        "says: process 2 stopped: process 1 could not go on: no teacher file here",
        "silent (process 3 stopped: process 1 could not go on: no teacher file here)",
    ]
    assert outcomes["every process fails alike"] == ["says: bad recipe", "silent (bad recipe)"] * 2
    assert outcomes["a machine's second process fails"] == [
        "says: process 0 stopped: process 3 could not go on: no data here",
        "silent (process 1 stopped: process 3 could not go on: no data here)",
        "silent (process 2 stopped: process 3 could not go on: no data here)",
        "says here: no data here",
    ]


def test_buffers_are_averaged_over_processes(tmp_path: Path) -> None:
    """BatchNorm statistics: the mean of the processes' values; counters: rank 0's; other
    buffers: untouched."""
    results = str(tmp_path / "buffers")
    mp.spawn(_average_buffers_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
    for rank in (0, 1):
        buffers = torch.load(f"{results}.{rank}", weights_only=True)
        torch.testing.assert_close(buffers["0.running_mean"], torch.full((3,), 0.5))
        torch.testing.assert_close(buffers["0.running_var"], torch.full((3,), 2.0))
        assert buffers["0.num_batches_tracked"].item() == 5
        torch.testing.assert_close(buffers["other"], torch.full((2,), float(rank)))


def test_each_rank_takes_the_gpu_of_its_local_rank_if_the_machine_has_it() -> None:
    rank_one = Distributed(rank=1, world_size=2, local_rank=1)
    assert rank_one.take_device(torch.device("cpu")) == torch.device("cpu")
    assert Distributed().take_device(torch.device("cuda")) == torch.device("cuda")
    if torch.cuda.device_count() > 1:
        assert rank_one.take_device(torch.device("cuda")) == torch.device("cuda", 1)
    else:
        with pytest.raises(UserError, match="torchrun started process 1 on this machine but"):
            rank_one.take_device(torch.device("cuda"))


def test_a_teacher_that_fails_to_load_on_one_process_stops_both_with_its_message(
    tmp_path: Path,
) -> None:
    """A node without the teacher's file (here: an entrypoint that refuses on rank 1 only)
    stops every process with that line, before the data is read, not with rank 0 running on
    into a collective its partner never joins."""
    (tmp_path / "rank_teacher.py").write_text(
        "import os\n"
        "import torch\n"
        "from compressor.models.cifar_resnet import cifar_resnet\n\n"
        "def build():\n"
        "    if os.environ['RANK'] == '1':\n"
        "        raise FileNotFoundError('no teacher weights on this node')\n"
        "    torch.manual_seed(0)\n"
        "    return cifar_resnet(num_classes=10, in_channels=1, depth=8)\n"
    )
    recipe = tmp_path / "kd.yaml"
    config = {
        "teacher": {"entrypoint": "rank_teacher:build"},
        "student": {"arch": "resnet8"},
        "method": {"name": "kd"},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "run"},
    }
    recipe.write_text(yaml.safe_dump(config))
    done = torchrun("distill", recipe, pythonpath=tmp_path)
    assert done.returncode == 1  # torchrun's own code when a worker fails (each exits 2)
    assert "no teacher weights on this node" in done.stderr
    assert "reading data set" not in done.stdout + done.stderr
    # One line on this machine's terminal: process 0, beside it, says nothing more.
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in done.stderr.splitlines() if "no teacher weights" in line)
    ]
    assert "Connection closed" not in done.stderr
    assert not (tmp_path / "run").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(tmp_path: Path, configs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Two "nodes" (two torchrun launchers, one process each), node N on `configs[N]`:
    (stdout, stderr) of each; a node left waiting for the other fails the test."""
    port = str(_free_port())
    scratch = tmp_path / "torchrun-tmp"
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    nodes = []
    for node, config in enumerate(configs):
        recipe = tmp_path / f"node{node}.yaml"
        recipe.write_text(yaml.safe_dump(config))
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--node_rank", str(node), "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
            "--master_port", port, "-m", "compressor", "distill", str(recipe),
        ]  # fmt: skip
        nodes.append(subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=env))
    outputs = []
    try:
        for process in nodes:
            outputs.append(process.communicate(timeout=180))
    except subprocess.TimeoutExpired:
        for process in nodes:
            process.terminate()
            process.communicate(timeout=120)
        pytest.fail("a node waited for the one that had stopped")
    assert [process.returncode for process in nodes] == [1, 1]  # torchrun's: a worker failed
    return outputs


def _kd_recipe(tmp_path: Path, teacher: Path) -> dict[str, Any]:
    return {
        "teacher": {"checkpoint": str(teacher)},
        "student": {"arch": "resnet8"},
        "method": {"name": "kd"},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "run"},
    }


def test_a_node_missing_a_file_the_recipe_names_stops_the_other_node_too(
    tmp_path: Path, digits_teacher: Path
) -> None:
    """The second node lacks the teacher's file. It used to stop at the recipe check, before
    joining the process group, leaving the first waiting in init_process_group for gloo's
    30-minute timeout; both now stop at once, each with its line."""
    missing = tmp_path / "not-copied-here.pt"
    (_, first), (_, second) = two_nodes(
        tmp_path, [_kd_recipe(tmp_path, digits_teacher), _kd_recipe(tmp_path, missing)]
    )
    assert f"teacher.checkpoint: file '{missing}'" in second, second
    # The first node's terminal says which process stopped it, and why.
    assert "error: process 0 stopped: process 1 could not go on: " in first, first
    assert f"teacher.checkpoint: file '{missing}' does not exist" in first
    assert not (tmp_path / "run").exists()


def test_a_node_whose_recipe_does_not_read_stops_the_other_node_too(
    tmp_path: Path, digits_teacher: Path
) -> None:
    """Read before the process group was joined, a recipe one node's copy of which is wrong
    left the other waiting, silent, for 30 minutes."""
    wrong = _kd_recipe(tmp_path, digits_teacher)
    wrong["train"]["bogus"] = 1
    (_, first), (_, second) = two_nodes(tmp_path, [_kd_recipe(tmp_path, digits_teacher), wrong])
    assert "train.bogus" in second, second
    assert "error: process 0 stopped: process 1 could not go on: " in first, first
    assert "train.bogus" in first


def test_nodes_whose_copies_of_the_recipe_train_differently_are_refused(
    tmp_path: Path, digits_teacher: Path
) -> None:
    """A copy with another epoch count crashed the run in a collective that did not match
    (gloo's abort, the manifest left "running"); one with another learning rate trained
    each process its own way. Where files are may differ: each machine names its own."""
    other = _kd_recipe(tmp_path, digits_teacher)
    other["train"]["epochs"] = 2
    copied = tmp_path / "teacher-copy.pt"
    shutil.copy(digits_teacher, copied)
    other["teacher"]["checkpoint"] = str(copied)  # its own copy of the teacher: fine
    (_, first), (_, second) = two_nodes(tmp_path, [_kd_recipe(tmp_path, digits_teacher), other])
    for said in (first, second):
        lines = [line for line in said.splitlines() if line.startswith("error: ")]
        assert lines == [
            f"error: {tmp_path / f'node{said is second:d}.yaml'}: process 1's copy of the recipe "
            "differs from process 0's (train.epochs: 1 → 2); give every machine the same recipe"
        ], said
    assert not (tmp_path / "run").exists()


def test_a_refusal_every_process_hits_is_one_line(tmp_path: Path) -> None:
    """Two processes reading one recipe with an unknown key said it twice (eight GPUs:
    eight times)."""
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({"student": {"arch": "resnet8"}, "train": {"bogus": 1}}))
    done = torchrun("train", recipe)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.bogus" in errors[0], done.stderr


def test_conflict_projection_is_refused_before_the_data_loads(
    tmp_path: Path, digits_teacher: Path
) -> None:
    """The refusal came from the method, after the data and the teacher had loaded: minutes
    on real data. The engine now refuses it first, before anything is read or written."""
    recipe = tmp_path / "projected.yaml"
    config = {
        "teacher": {"arch": "resnet8", "checkpoint": str(digits_teacher)},
        "student": {"arch": "resnet8"},
        "method": {"name": "amkd", "project_conflicts": True},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "run"},
    }
    recipe.write_text(yaml.safe_dump(config))
    done = torchrun("distill", recipe)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: method.project_conflicts runs in one process only; drop it, or train without "
        "torchrun"
    ], done.stderr
    assert "reading data set" not in done.stdout
    assert not (tmp_path / "run").exists()


_TORCHRUN = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK, MASTER_ADDR, MASTER_PORT are not"),
        (
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"},
            "WORLD_SIZE=2 is set but MASTER_PORT is not",
        ),
        ({"WORLD_SIZE": "two"}, "not a whole number (WORLD_SIZE='two'"),
        ({**_TORCHRUN, "MASTER_PORT": "abc"}, "MASTER_PORT='abc'"),
        ({**_TORCHRUN, "MASTER_PORT": "99999"}, "MASTER_PORT=99999 is not a port"),
        ({**_TORCHRUN, "RANK": "5"}, "RANK=5, LOCAL_RANK=0 with WORLD_SIZE=2: a rank is 0 to 1"),
        ({**_TORCHRUN, "RANK": "-1"}, "RANK=-1, LOCAL_RANK=0 with WORLD_SIZE=2"),
    ],
    ids=[
        "world size alone",
        "no port",
        "not a number",
        "port not a number",
        "port out of range",
        "rank past the world",
        "rank below 0",
    ],
)
def test_a_partial_torchrun_environment_is_one_line_before_anything_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    expected: str,
) -> None:
    """A WORLD_SIZE left in a shell used to end in a KeyError, or in torch's rendezvous
    error: said in one line, with exit 2, and no run directory made."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    recipe = tmp_path / "recipe.yaml"
    config = {
        "student": {"arch": "resnet8"},
        "train": {"epochs": 1, "max_steps_per_epoch": 1, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe.write_text(yaml.safe_dump(config))
    result = run_cli(capsys, "train", str(recipe))
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "unset" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_global_batch_must_split_into_2_or_more_per_process() -> None:
    """One image per process crashed batch norm in the first step."""
    two = Distributed(rank=0, world_size=2)
    assert two.per_rank_batch(8) == 4
    with pytest.raises(UserError, match="does not split evenly over 2 processes"):
        two.per_rank_batch(5)
    with pytest.raises(UserError, match="gives each of 2 processes one image per step"):
        two.per_rank_batch(2)


def test_a_process_that_dies_stops_the_others_with_one_line_not_a_crash(
    tmp_path: Path,
) -> None:
    """SIGKILL (the out-of-memory killer, say) on rank 1 two seconds into training: rank 0
    printed gloo's traceback and "compress crashed ... a bug" (exit 3)."""
    (tmp_path / "dying_teacher.py").write_text(
        "import os, signal, threading, time\n"
        "import torch\n"
        "from compressor.models.cifar_resnet import cifar_resnet\n\n"
        "def kill_once_training():\n"  # a fixed delay raced the start on a busy machine
        f"    while not os.path.exists({str(tmp_path / 'run' / 'manifest.json')!r}):\n"
        "        time.sleep(0.1)\n"
        "    time.sleep(2.0)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n\n"
        "def build():\n"
        "    if os.environ['RANK'] == '1':\n"
        "        threading.Thread(target=kill_once_training, daemon=True).start()\n"
        "    torch.manual_seed(0)\n"
        "    return cifar_resnet(num_classes=10, in_channels=1, depth=8)\n"
    )
    recipe = tmp_path / "kd.yaml"
    config = {
        "teacher": {"entrypoint": "dying_teacher:build"},
        "student": {"arch": "resnet8"},
        "method": {"name": "kd"},
        "train": {"epochs": 50, "batch_size": 8, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "run"},
    }
    recipe.write_text(yaml.safe_dump(config))
    done = torchrun("distill", recipe, pythonpath=tmp_path)
    assert done.returncode == 1  # torchrun's, for a worker that failed
    assert "compress crashed" not in done.stderr
    assert done.stderr.count("Traceback (most recent call last)") <= 1  # torchrun's own
    # Which comes first is a race: rank 0 finding the connection gone (one line), or
    # torchrun's SIGTERM to it on seeing rank 1 die (a Ctrl-C's "interrupted"). Either way
    # the run is marked as ended and the way to continue is printed.
    lost = "error: process 0 stopped: another process of the run ended without a word ("
    status = json.loads((tmp_path / "run" / "manifest.json").read_text())["status"]
    if lost in done.stderr:
        assert status == "failed"
        assert len([line for line in done.stderr.splitlines() if line.startswith(lost)]) == 1
    else:
        assert status == "interrupted", done.stderr
    assert "-m compressor distill" in done.stdout + done.stderr  # how to continue
