"""Fixtures shared by all test packages: where the real data and teachers are.

A user's clone has no `shared/` folder beside it, so every test that needs real files
skips with a reason instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from compressor.recipe import DATA_ROOT_ENV

# $COMPRESSOR_SHARED_DIR points elsewhere when the checkout is not beside shared/.
SHARED = Path(
    os.environ.get("COMPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared"
)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give each worker its share of the cores.

    Why: every worker would otherwise run torch (and the CLI processes it starts) on all
    cores, and oversubscribed OpenMP threads make the suite slower than one worker.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The development `shared/` folder beside the repository: data/ and teachers/."""
    if not SHARED.is_dir():
        pytest.skip(
            f"no shared folder at {SHARED} (real data and teachers); set COMPRESSOR_SHARED_DIR"
        )
    return SHARED


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """A directory holding the real cifar-10-batches-py/: $COMPRESSOR_DATA_ROOT, else
    shared/data."""
    env = os.environ.get(DATA_ROOT_ENV)
    root = Path(env) if env else SHARED / "data"
    if not (root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 not found in {root}; set {DATA_ROOT_ENV} to run this test")
    return root


@pytest.fixture(autouse=True)
def torch_settings_left_as_found() -> Iterator[None]:
    """Fail a test that leaves torch's thread count or deterministic mode changed.

    Why: both change the numerics of every later test in the process. A benchmark's
    `--num-threads 1`, left behind, made the quickstart's teacher score 98.33 % in the suite
    against the 98.89 % that `compress quickstart` gives on the same 2 cores.
    """
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    yield
    after = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    assert after == before, f"torch (threads, deterministic) left at {after}, found at {before}"
