"""A full disk, as far as one process can tell: files past a size limit fail to write.

RLIMIT_FSIZE makes a write past the limit fail with EFBIG (SIGXFSZ ignored, so it fails
instead of killing the process). Unlike a read-only folder it binds root, which the suite
runs as, and it needs no disk image or mount.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

try:
    import resource
except ImportError:  # Windows: the tests that need it skip, the modules still collect
    resource = None  # type: ignore[assignment]

needs_file_size_limits = pytest.mark.skipif(
    resource is None or not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits"
)


def _limited(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def compress_with_file_size_limit(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`compress ARGS` in a child process that cannot write a file past `limit` bytes."""
    return subprocess.run(
        [sys.executable, "-m", "compressor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited(limit),
    )


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process cannot write a file past `limit` bytes until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
