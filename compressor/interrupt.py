"""Ctrl-C and SIGTERM: how the command now running was stopped, and holding them off around
the steps a stop must not cut in two.

The commands that print where they stopped and how to go on set `stop.said`;
compressor/entry.py sets `stop.signal` from its SIGINT and SIGTERM handler, and reads both
when the command has ended: to print the one line nobody printed yet, and to tell Ctrl-C's exit
code from SIGTERM's. `interrupts_deferred` (a checkpoint write: act on the stop after it) and
`interrupts_ignored` (a publish: the command ends in moments anyway) hold them off, as
`import_whole` does around a slow first import.
"""

from __future__ import annotations

import importlib
import signal as signals
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import FrameType
from typing import Any

_STOP_SIGNALS = (signals.SIGINT, signals.SIGTERM)


@dataclass
class Stop:
    """How the command now running was stopped by a signal, if it was."""

    signal: int | None = None  # SIGINT or SIGTERM, once one arrived
    said: bool = False  # the command printed where it stopped and how to go on
    # Its exit code is decided and the process is ending: a SIGTERM now (torchrun stopping
    # the other workers of a failed run) has nothing left to stop, and raised in an atexit
    # callback it printed "Exception ignored in atexit callback" and a traceback.
    ending: bool = False


stop = Stop()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block whole; a Ctrl-C or SIGTERM that came meanwhile is acted on after it,
    by the handler that was in place (KeyboardInterrupt, or the CLI's own)."""
    arrived: list[tuple[int, FrameType | None]] = []
    with _stop_signals_handled_by(lambda number, frame: arrived.append((number, frame))) as before:
        yield
    if arrived:
        number, frame = arrived[0]
        handler = before[signals.Signals(number)]
        if callable(handler):
            handler(number, frame)
        elif handler == signals.SIG_DFL:
            signals.raise_signal(number)


def import_whole(*names: str) -> None:
    """Import the modules `names` with a stop held off until they are loaded. torch imports
    some only on first use, for seconds (torch._dynamo on an optimizer's first step, the
    ONNX exporter on the first export): a Ctrl-C then left them half-loaded, and in a process
    that goes on (a notebook) every later run crashed on them ("module 'sympy' has no
    attribute 'logic'"), or blamed the user's checkpoint. A name this torch lacks is skipped:
    what needs it imports it, or says why."""
    for name in names:
        if name in sys.modules:
            continue
        with interrupts_deferred(), suppress(ImportError):
            importlib.import_module(name)


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block is dropped: for a few renames after which the work
    is complete and the command ends in moments anyway."""
    with _stop_signals_handled_by(signals.SIG_IGN):
        yield


@contextmanager
def _stop_signals_handled_by(
    handler: Callable[[int, FrameType | None], Any] | int,
) -> Iterator[dict[signals.Signals, Any]]:
    """SIGINT and SIGTERM go to `handler` during the block, then back to the handlers they
    had (yielded, by signal). Main thread only, where Python runs signal handlers: elsewhere
    nothing changes and nothing is yielded."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    before = {number: signals.signal(number, handler) for number in _STOP_SIGNALS}
    try:
        yield before
    finally:
        for number, previous in before.items():
            # None: a handler set outside Python, which cannot be put back; the default is.
            signals.signal(number, signals.SIG_DFL if previous is None else previous)
