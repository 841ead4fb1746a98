"""compressor/interrupt.py: Ctrl-C held off around the steps a stop must not cut in two."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from compressor.interrupt import import_whole, interrupts_deferred, interrupts_ignored
from tests.signal_helpers import needs_posix_signals

pytestmark = needs_posix_signals


def test_a_deferred_ctrl_c_is_acted_on_after_the_block_whole() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        steps.append("finished")
    assert steps == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_deferred_sigterm_goes_to_the_handler_that_was_in_place() -> None:
    heard: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: heard.append(number))
    try:
        with interrupts_deferred():
            signal.raise_signal(signal.SIGTERM)
            assert heard == []
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_ctrl_c_is_dropped_and_the_handler_put_back() -> None:
    with interrupts_ignored():
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


SLOW_FIRST_IMPORT = """
import os
import signal

os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a slow first import
loaded = True
"""


def test_a_ctrl_c_during_a_first_import_is_acted_on_once_the_module_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped half-way, torch._dynamo stayed half-loaded, and every later run in the same
    process (a notebook) crashed on it."""
    (tmp_path / "slow_first_import.py").write_text(SLOW_FIRST_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_first_import", raising=False)
    with pytest.raises(KeyboardInterrupt):
        import_whole("slow_first_import")
    assert sys.modules["slow_first_import"].loaded
    import_whole("slow_first_import")  # loaded: not imported again, no stop
    monkeypatch.delitem(sys.modules, "slow_first_import")
    import_whole("no_such_module_here")  # what needs it says why
