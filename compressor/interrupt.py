"""How the command now running was stopped by a signal, if it was.

The commands that print where they stopped and how to go on set `said`; compressor/entry.py
sets `signal` from its SIGTERM handler, and reads both when the command has ended: to print
the one line nobody printed yet, and to tell Ctrl-C's exit code from SIGTERM's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stop:
    """How the command now running was stopped by a signal, if it was."""

    signal: int | None = None  # SIGTERM when it took Ctrl-C's path
    said: bool = False  # the command printed where it stopped and how to go on


stop = Stop()
