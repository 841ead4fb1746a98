"""Errors that are the user's to fix.

Anything raised as a `UserError` is printed by the CLI as plain lines (no traceback unless
`--debug`) and ends the process with exit code 2. Everything else is a bug in compressor and
keeps its traceback, so the two never get confused.
"""

from __future__ import annotations

import warnings


class UserError(Exception):
    """Bad input: a recipe, checkpoint, data set, file or flag the user can correct.

    `lines` holds one self-contained message per problem, so several recipe errors can be
    reported at once instead of one per run.
    """

    def __init__(self, *lines: str) -> None:
        if not lines:
            raise ValueError("UserError needs at least one message line")
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class ChannelsDiffer(UserError):
    """A model or checkpoint that takes another number of image channels than the data gives.
    `channels` is the number it takes, said on `lines[line]`: where the data is an image
    folder, which reads as 1 or 3 channels by data.channels, the caller that knows the recipe
    adds there which setting fits."""

    def __init__(self, *lines: str, channels: int, line: int = 0) -> None:
        super().__init__(*lines)
        self.channels, self.line = channels, line


class SaidElsewhere(UserError):
    """Bad input another process of the same torchrun run prints on this machine's terminal:
    this one exits 2 silently, so eight GPUs give one `error:` line, not eight. (A refusal
    every process hits alike, such as a recipe error, is printed by LOCAL_RANK 0 alone.)"""


class OnlyHere(UserError):
    """Bad input this process of a torchrun run hit and no lower process of its machine did
    (a step run `together`): printed whatever its LOCAL_RANK."""


# Appended where the user's own code failed (an entrypoint): the line to fix is in its
# traceback, which bad input hides. Left out of what is printed under --debug, which shows it.
DEBUG_HINT = " (`compress --debug ...` shows the traceback into your code)"


def short_reason(error: BaseException) -> str:
    """The error's type and first sentence: torch's messages run to paragraphs."""
    lines = str(error).strip().splitlines() or ["no details"]
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1][:200]  # the TorchScript traceback ends with the real "Error: ..." line
    return f"{type(error).__name__}: {lines[0].split('. ')[0][:160]}"


class CompressorWarning(UserWarning):
    """A warning for a caller of the Python API who gave no callback to hear it (the CLI
    prints the same text as a `warning:` line): something to look at that does not stop
    the work, such as a gate bar that almost anything passes."""


def warn_caller(text: str) -> None:
    """`text` as a CompressorWarning: what a library caller hears when nothing else listens,
    rather than nothing (`warnings.simplefilter("error", CompressorWarning)` makes them fail)."""
    warnings.warn(text, CompressorWarning, stacklevel=2)
