"""The terminal progress: a line per epoch in CI logs, an animated bar only on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from compressor.engine.run import run_training
from compressor.engine.training import EpochResult
from compressor.progress import RichObserver
from compressor.recipe import load_recipe

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
    observer = RichObserver(log, warn=print)
    on_step = observer.epoch_started(1, 3, steps=10)
    assert on_step is not None
    on_step(5, 10, 0.5, 80.0, 320)  # within the first minute: nothing
    observer.epoch_finished(1, 3, RESULT, test=91.25)
    unscored = EpochResult(**{**RESULT.__dict__, "stats": {}})
    observer.epoch_finished(1, 3, unscored, test=None)
    assert output.getvalue().splitlines() == [
        LINE,
        "epoch 2/3: loss 0.1235, train top-1 97.50 %, 12,346 images/s, lr 0.05",
    ]


def test_a_long_epoch_in_a_log_says_how_far_it_got_once_a_minute() -> None:
    """Silent until its line, an epoch of CIFAR-10 on the CPU (ten minutes and more) left a
    CI log without a sign of life."""
    log, output = console(terminal=False)
    now = [0.0]
    observer = RichObserver(log, warn=print, clock=lambda: now[0])
    on_step = observer.epoch_started(0, 3, steps=2000)
    assert on_step is not None
    for step, seconds in ((10, 30.0), (500, 61.0), (510, 90.0), (1000, 125.0), (2000, 250.0)):
        now[0] = seconds
        on_step(step, 2000, 0.5, 80.0, 64 * step)
    assert output.getvalue().splitlines() == [
        "epoch 1/3: step 500/2,000, loss 0.5000, top-1 80.0 %, 525 images/s",
        "epoch 1/3: step 1,000/2,000, loss 0.5000, top-1 80.0 %, 512 images/s",
    ]  # not at the last step: the epoch's own line follows


@pytest.mark.parametrize("env", [{"FORCE_COLOR": "1"}, {"TERM": "dumb"}])
def test_a_log_taken_for_a_terminal_gets_no_bar(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FORCE_COLOR (set in CI for coloured logs) makes rich take a log for a terminal: the
    bar's redraws filled it; on TERM=dumb each redraw was a line."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    output = io.StringIO()
    log = Console(file=output, width=200, force_terminal=True if "TERM" in env else None)
    assert log.is_terminal
    observer = RichObserver(log, warn=print)
    on_step = observer.epoch_started(1, 3, steps=10)
    assert on_step is not None
    on_step(5, 10, 0.5, 80.0, 320)
    assert observer._progress is None and "\r" not in output.getvalue()


def test_a_terminal_gets_a_bar_that_gives_way_to_the_epoch_line() -> None:
    terminal, output = console(terminal=True)
    observer = RichObserver(terminal, warn=print)
    on_step = observer.epoch_started(1, 3, steps=10)
    assert on_step is not None
    on_step(5, 10, 0.5, 80.0, 320)
    observer.epoch_finished(1, 3, RESULT, test=91.25)
    assert LINE in output.getvalue()


class _CtrlCAtStep(RichObserver):
    """The bar of a real run, with Ctrl-C pressed at its first update (step 10)."""

    def epoch_started(self, epoch: int, epochs: int, steps: int):  # type: ignore[no-untyped-def]
        on_step = super().epoch_started(epoch, epochs, steps)
        assert on_step is not None

        def pressed(step: int, *args: float) -> None:
            on_step(step, *args)
            raise KeyboardInterrupt

        return pressed


def test_ctrl_c_mid_epoch_takes_the_bar_down_and_gives_the_cursor_back(tmp_path: Path) -> None:
    """Left running, the bar was drawn again below "interrupted; ..." and the terminal's
    cursor stayed hidden."""
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(
        yaml.safe_dump(
            {
                "student": {"arch": "resnet8"},
                "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
                "output": {"dir": str(tmp_path)},
            }
        )
    )
    terminal, output = console(terminal=True)
    observer = _CtrlCAtStep(terminal, warn=print)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_recipe(recipe_path), recipe_path, distill=False, observer=observer)
    drawn = output.getvalue()
    assert drawn.count("\x1b[?25l") == drawn.count("\x1b[?25h") >= 1  # hidden, then shown
    assert "interrupted" in drawn.rsplit("\x1b[?25h", 1)[1]  # said after the bar came down
