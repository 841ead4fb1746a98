"""Commands run as an unprivileged user, for tests of files and folders this user may not
read. The suite runs as root, whom file permissions do not bind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli_helpers import CliResult

NOBODY = 65534
_AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@contextmanager
def open_folder() -> Iterator[Path]:
    """A folder the unprivileged user may enter and read (pytest's tmp_path is root's own)."""
    folder = Path(tempfile.mkdtemp(prefix="compressor-nobody-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def compress_as_nobody(folder: Path, *args: str) -> CliResult:
    """`compress ARGS` run from `folder` as user nobody; skipped where that cannot be done
    (not root, no setpriv, or this checkout is not readable by others)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as another user")
    home = folder / "home"  # caches (matplotlib's, torch's) go somewhere it may write
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home / ".mpl")}
    command = [*_AS_NOBODY, sys.executable]
    reachable = subprocess.run(
        [*command, "-c", "import compressor"], cwd=folder, env=env, capture_output=True
    )
    if reachable.returncode != 0:
        pytest.skip("this checkout or its Python is not readable by other users")
    done = subprocess.run(
        [*command, "-m", "compressor", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)
