"""Atomic file writes: a reader sees the old file or the new one, never half of either; and
file hashes, which tie a later stage's outputs to the file they were made from; and the locks
that keep two processes from writing one run or one export at once.

Runs are long and get killed; a report or checkpoint cut off mid-write would make a run
directory look complete when it is not. Every write goes to a temporary file in the same
directory, is fsynced, then renamed over the target (rename is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

from compressor.errors import UserError
from compressor.interrupt import interrupts_deferred


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# mkstemp creates 0600 files; results (reports, ONNX files for deployment) get the mode any
# ordinary file would, 0666 less the umask.
_PUBLIC_MODE = 0o666 & ~_umask()


def file_in_the_way(path: Path) -> Path | None:
    """The file standing where one of `path`'s folders should be (`r20.yaml` in
    `r20.yaml/out.xml`), or None."""
    for folder in Path(path).parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None


def _make_parent(path: Path) -> None:
    """Create the folder `path` goes in. A file in the way is named: mkdir's own words, 'File
    exists' or 'Not a directory', leave the user guessing which path they are about."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_the_way = file_in_the_way(path)
        if in_the_way is None:
            raise
        raise NotADirectoryError(
            errno.ENOTDIR, f"{in_the_way} is a file, not a folder", str(path)
        ) from None


class WriteFailed(UserError):
    """A file could not be written: the disk is full, the folder read-only, a size limit
    reached. The machine's to put right, not a bug in compressor, so it is one line and exit 2
    rather than a crash's traceback; the file it would have replaced is still whole.
    `strerror` lets a caller word it for its own file (the JUnit file, the schema)."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path = Path(path)
        self.strerror = error.strerror or str(error)
        self.errno = error.errno
        fix = what_to_do(self.path.parent, error.errno)
        super().__init__(f"{path}: cannot write it ({self.strerror})" + (f"; {fix}" if fix else ""))


def what_to_do(folder: Path, code: int | None) -> str | None:
    """The fix for a write into `folder` that failed with errno `code`; None for an error
    that is not the machine's (disk space, permissions, size limit)."""
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"free some space on the disk that holds {folder}"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"make {folder} writable"
    if code == errno.EFBIG:
        return "the file is larger than this process may write (see `ulimit -f`)"
    return None


# A run's JSON and YAML records (manifest, reports, recipe) are kilobytes. A crafted run
# directory (a CI artifact) with a sparse file of gigabytes in their place took the gate's
# memory, and a named pipe blocked it for ever.
MAX_RECORD_BYTES = 16 * 2**20


def record_unreadable(path: Path) -> str | None:
    """Why `path` is not read as a record (not a regular file, or far too large); None when
    it may be read."""
    if not path.is_file():
        return "not a regular file"
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        return f"{size / 2**20:,.0f} MiB, far more than a record of a run holds"
    return None


def loads_json(text: str | bytes) -> Any:
    """`json.loads`, where every way the text is not JSON we can read is a ValueError: the
    parser's own RecursionError on nesting thousands deep (a damaged or crafted file) would
    otherwise escape every `except ValueError` as a crash. Over-long integers are already a
    ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def regular_or_absent(path: Path) -> bool:
    """May a file be written at `path`? A device such as /dev/stdout or a named pipe may not:
    the atomic write would put a regular file in its place (as root, /dev/null), and reading
    it to check what it holds would wait for ever. Looked up without opening it."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True  # absent, or writing it reports why it cannot be written


def check_writable(path: Path) -> None:
    """Raise WriteFailed now if `path` could not be written later: its folders are made and a
    scratch file created in the last one and removed, as the atomic write will. For a file
    written after minutes of work, or after a verdict was printed (a --junit in /proc, a
    read-only mount), so the one line comes before the work, not after it."""
    handle, temp_name = _scratch_beside(Path(path))
    os.close(handle)
    Path(temp_name).unlink(missing_ok=True)


def _scratch_beside(path: Path) -> tuple[int, str]:
    """A new hidden file in `path`'s folder (made if need be), opened: where the atomic write
    puts the bytes before the rename."""
    try:
        _make_parent(path)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteFailed(path, error) from error


# What `_scratch_beside` names a scratch file: mkstemp's 8 random characters between them.
_SCRATCH_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_scratch_name(name: str) -> bool:
    """Is `name` one an atomic write gives its scratch file (`_scratch_beside`)?"""
    return _SCRATCH_NAME.fullmatch(name) is not None


def remove_scratch_files(folder: Path) -> None:
    """Remove the scratch files atomic writes left in `folder` when killed before their
    rename (a whole checkpoint, say): nothing else removes them. Only by one who holds the
    folder's lock, so no write of another process is under way there."""
    with contextlib.suppress(OSError):  # a folder that cannot be listed has none to remove
        for entry in folder.iterdir():
            if is_scratch_name(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    handle, temp_name = _scratch_beside(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, _PUBLIC_MODE)
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteFailed(path, error) from error
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every platform lets a directory be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    def write(stream: IO[bytes]) -> None:
        stream.write(data)

    _atomic_write(path, write)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def previous_of(path: Path) -> Path:
    """Where a rotating file keeps the copy it replaced (checkpoints/previous-last.pt)."""
    return path.with_name(f"previous-{path.name}")


def write_json(path: Path, payload: Any) -> None:
    """`payload` as strict JSON (`strict_json`), indented for people to read."""
    write_text(path, strict_json(payload, indent=2) + "\n")


def strict_json(payload: Any, indent: int | None = None) -> str:
    """Strict JSON, which jq and browsers read: a non-finite number (the parity of a model
    whose outputs are not finite, the test loss of a diverged student) is written as null,
    not as Python's NaN or Infinity."""
    return json.dumps(_finite(payload), indent=indent, sort_keys=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def save_torch(path: Path, payload: Any) -> None:
    """torch.save, atomically, with Ctrl-C and SIGTERM put off until the file is in place.

    torch.save writes through C++, which calls back into the stream: a KeyboardInterrupt
    raised in that callback cannot unwind through the C++ writer, and the process aborts
    ("terminate called after throwing an instance of 'pybind11::error_already_set'")
    instead of stopping as Ctrl-C should, with the run marked interrupted.

    It is serialised in memory first, then written: writing through torch's C++ writer, a
    full disk surfaced as "RuntimeError: [enforce fail at inline_container.cc] unexpected
    pos", the OS's reason lost, and was reported as a crash."""
    import torch  # here, not at the top: the gate and the ONNX checks run without torch

    with interrupts_deferred():
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        write_bytes(path, buffer.getbuffer())


def append_line(path: Path, line: str) -> None:
    """Append one line to a log, rewriting it atomically so a kill never leaves half a line."""
    existing = path.read_bytes() if path.exists() else b""
    write_bytes(path, existing + line.rstrip("\n").encode("utf-8") + b"\n")


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (checkpoints and ONNX files can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_or_refuse(path: Path, busy: str) -> FileLock:
    """Take the OS lock on `path` (flock; the kernel drops it when its holder dies, so a killed
    process never leaves it stuck) without waiting: UserError(busy) when another holds it.
    OSError (a read-only folder) is the caller's to word."""
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(busy) from None
    return lock


def shared_lock_or_refuse(path: Path, busy: str) -> Callable[[], None]:
    """Take `path`'s OS lock shared, as a reader, without waiting, and return what releases
    it. Any number of readers hold it at once (the fp32 and int8 CI gates of one run), while
    a writer's `lock_or_refuse` excludes them and they it: UserError(busy) when a writer
    holds it. Opened read-only, so a read-only copy of a run can be read. Where flock is
    missing (Windows), the writer's exclusive lock stands in. OSError (no such file) is the
    caller's to word."""
    try:
        import fcntl
    except ImportError:
        return lock_or_refuse(path, busy).release
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(busy) from None
    return lambda: os.close(descriptor)  # closing it releases the lock
