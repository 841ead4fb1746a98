"""`compress` and `python -m compressor` (also what torchrun launches) start here.

Only the standard library is loaded before `compressor.entry` (typer and rich: a fraction of a
second, more on a cold disk or a busy machine), so a Ctrl-C while that import runs ends like
a Ctrl-C anywhere else, one line and exit 130, instead of a traceback through importlib.
"""

import gc
import os
import signal
import sys
from pathlib import Path


def main() -> None:
    """The `compress` console script."""
    try:
        from compressor.entry import main as run_command
    except KeyboardInterrupt:
        sys.stderr.write("stopped by Ctrl-C while starting; nothing was done\n")
        sys.exit(130)
    try:
        run_command()
    finally:
        # The process ends now, its exit code decided: a Ctrl-C pressed again (one of several)
        # would raise KeyboardInterrupt in an atexit callback, printed with a traceback, and
        # the process would die of the signal instead of exiting with its code.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Nor need its objects be collected: Python's collection at exit walked the hundreds
        # of thousands torch's compilers and the ONNX exporter leave (1 to 5 s after the
        # last line). Frozen, they are freed as the process ends; atexit handlers still run.
        gc.freeze()


def _drop_working_folder_from_path() -> None:
    """`python -m` puts the working folder first on sys.path, so a user's `export.py`,
    `torch.py` or `yaml.py` there would be imported in place of ours (a traceback, or their
    code run unasked). `compress` has no such entry; this makes `python -m compressor` the
    same. A source checkout run without installing keeps it: that is where the packages are."""
    if not sys.path or not sys.path[0]:
        return
    first = Path(sys.path[0]).resolve()
    source = Path(__file__).resolve().parent.parent
    if first == Path(os.getcwd()).resolve() and first != source:
        del sys.path[0]


if __name__ == "__main__":
    _drop_working_folder_from_path()
    main()
