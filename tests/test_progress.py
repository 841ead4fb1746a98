"""The terminal progress: a line per epoch in CI logs, an animated bar only on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from compressor.engine.training import EpochResult
from compressor.progress import RichObserver

RESULT = EpochResult(
    loss=0.12345,
    parts={"ce": 0.12345},
    stats={"boundary_fraction": 0.25},
    train_accuracy=97.5,
    images_per_second=12345.6,
    lr=0.05,
    seconds=1.0,
)
LINE = (
    "epoch 2/3: loss 0.1235, train top-1 97.50 %, test top-1 91.25 %, 12,346 images/s, "
    "lr 0.05, on boundary 25 %"
)


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    return Console(file=output, force_terminal=terminal, width=200, color_system=None), output


def test_a_ci_log_gets_one_line_per_epoch_and_no_bar() -> None:
    log, output = console(terminal=False)
    observer = RichObserver(log)
    assert observer.epoch_started(1, 3, steps=10) is None
    observer.epoch_finished(1, 3, RESULT, test=91.25)
    unscored = EpochResult(**{**RESULT.__dict__, "stats": {}})
    observer.epoch_finished(1, 3, unscored, test=None)
    assert output.getvalue().splitlines() == [
        LINE,
        "epoch 2/3: loss 0.1235, train top-1 97.50 %, 12,346 images/s, lr 0.05",
    ]


def test_a_terminal_gets_a_bar_that_gives_way_to_the_epoch_line() -> None:
    terminal, output = console(terminal=True)
    observer = RichObserver(terminal)
    on_step = observer.epoch_started(1, 3, steps=10)
    assert on_step is not None
    on_step(5, 10, 0.5, 80.0, 320)
    observer.epoch_finished(1, 3, RESULT, test=91.25)
    assert LINE in output.getvalue()
