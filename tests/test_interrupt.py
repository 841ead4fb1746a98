"""compressor/interrupt.py: Ctrl-C held off around the steps a stop must not cut in two."""

from __future__ import annotations

import signal

import pytest

from compressor.interrupt import interrupts_deferred, interrupts_ignored

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs POSIX signals")


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
