"""Fixtures shared by all test packages: where the real data and teachers are.

A user's clone has no `shared/` folder beside it, so every test that needs real files
skips with a reason instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compressor.recipe import DATA_ROOT_ENV

# $COMPRESSOR_SHARED_DIR points elsewhere when the checkout is not beside shared/.
SHARED = Path(
    os.environ.get("COMPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared"
)


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
