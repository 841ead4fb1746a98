"""A folder nothing can be created in, for tests of what a run or an export does there. The
suite runs as root, which `chmod a-w` does not bind."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """`chattr +i`: nothing can be created in `folder`, while files already in it stay
    writable. Unlike `chmod a-w` it binds root, which the suite runs as."""
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr (e2fsprogs) to make a folder immutable")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make {folder} immutable here (chattr +i: {made.stderr!r})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
