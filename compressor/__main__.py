"""`compress` and `python -m compressor` (also what torchrun launches) start here.

Only the standard library is loaded before `compressor.cli` (typer and rich: a fraction of a
second, more on a cold disk or a busy machine), so a Ctrl-C while that import runs ends like
a Ctrl-C anywhere else, one line and exit 130, instead of a traceback through importlib.
"""

import sys


def main() -> None:
    """The `compress` console script."""
    try:
        from compressor.cli import main as run_command
    except KeyboardInterrupt:
        sys.stderr.write("stopped by Ctrl-C while starting; nothing was done\n")
        sys.exit(130)
    run_command()


if __name__ == "__main__":
    main()
