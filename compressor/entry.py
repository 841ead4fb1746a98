"""The `compress` process: runs the command line and turns how a command ended into its exit
code and its last words.

Exit codes: 0 success, 1 a check failed (the gate), 2 bad input (recipe, checkpoint, data,
flags) — printed as one line per problem, without a traceback unless `--debug` is given;
3 a crash (a bug); 130 Ctrl-C, 143 SIGTERM, 141 output into a closed pipe.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import re
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import NoReturn

import typer

from compressor.cli import app, debug_mode, record_gate_error, under_torchrun
from compressor.errors import DEBUG_HINT, OnlyHere, SaidElsewhere, UserError
from compressor.interrupt import stop
from compressor.terminal import ASCII_FOR, error_console, shows_our_symbols


def main() -> None:
    """Console-script entry point: user errors become one line each and exit code 2.

    SIGTERM (a scheduler's or CI job's timeout, torchrun passing one on) stops a command as
    Ctrl-C does: a run's manifest says "interrupted" and the resume command is printed, an
    export keeps the previous one, instead of a silent exit that leaves the run "running".
    A command stopped where it has nothing to say (while it imports torch, say) ends with one
    line that names the signal.

    Output piped into a program that stops reading (`compress --help | head -1`) ends the
    command quietly with exit 141, as a program killed by SIGPIPE does: the handling the
    Python documentation gives (https://docs.python.org/3/library/signal.html#note-on-sigpipe)
    with the exit code a shell's `pipefail` expects, and never 1, which says a check failed.
    """
    _open_closed_streams()
    _tolerate_narrow_encodings()
    ctrl_c = signal.getsignal(signal.SIGINT)
    remember_ctrl_c = ctrl_c is signal.default_int_handler  # not where it is ignored (a `&` job)
    if remember_ctrl_c:
        signal.signal(signal.SIGINT, _stop_as_ctrl_c)
    try:
        _main()
    except SystemExit as exit_:
        stop.ending = True
        # typer ends a command whose output hit a closed pipe with exit 1, raised while it
        # handles the BrokenPipeError: the error is the exit's context.
        if isinstance(exit_.__context__, BrokenPipeError):
            _exit_on_closed_pipe()
        raise
    except BrokenPipeError:  # from this function's own output: an error line, click's help
        _exit_on_closed_pipe()
    finally:
        if remember_ctrl_c:  # as it was, for a caller that runs main() in its own process
            signal.signal(signal.SIGINT, ctrl_c)


def _in_ascii(error: UnicodeError) -> tuple[str, int]:
    """The codec error handler `compressor-ascii`: our symbols spelt in ASCII, others `?`."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(ASCII_FOR.get(char, "?") for char in text), error.end


codecs.register_error("compressor-ascii", _in_ascii)


def _tolerate_narrow_encodings() -> None:
    """Output to a stream whose encoding lacks our symbols (a Windows CI agent's cp1252 pipe,
    PYTHONIOENCODING=ascii) shows them in ASCII (>=, x, ->) on stdout, and an escape
    (\\u2265) on stderr, where a crash's traceback must stay exact, instead of crashing the
    command: a gate that passed must exit 0 and write its JUnit file whatever the log's code
    page."""
    for stream, errors in ((sys.stdout, "compressor-ascii"), (sys.stderr, "backslashreplace")):
        if not shows_our_symbols(getattr(stream, "encoding", None) or "utf-8"):
            with contextlib.suppress(AttributeError, ValueError):  # not a TextIOWrapper
                stream.reconfigure(errors=errors)  # type: ignore[union-attr]


def _another_process_says_it(error: UserError) -> bool:
    """Under torchrun every process of a machine reads the same recipe and files and hits the
    same refusal at once: LOCAL_RANK 0 prints it. A refusal one process alone hit is raised
    as OnlyHere (Distributed.together) and printed where it happened."""
    if isinstance(error, OnlyHere):
        return False
    return not _speaks_for_this_machine()


def _exit_after_the_speaker() -> NoReturn:
    """Exit 2 quietly, as the process that says the shared refusal (LOCAL_RANK 0) does, but
    not before it: torchrun stops every process once one exits, and a process that got
    there first had LOCAL_RANK 0 stopped before its line (the user saw "stopped by SIGTERM"
    alone). Its own exit ends the wait: torchrun then stops this one."""
    with contextlib.suppress(KeyboardInterrupt):  # torchrun's SIGTERM, taken as Ctrl-C
        time.sleep(_SPEAKER_GRACE_SECONDS)
    sys.exit(2)


_SPEAKER_GRACE_SECONDS = 10.0


def _speaks_for_this_machine() -> bool:
    """Outside torchrun, always; under it, LOCAL_RANK 0: a mistyped flag, or the SIGTERM
    torchrun sends the rest once one process has exited, is the same on every process of a
    machine, and one line of it is enough."""
    return not under_torchrun() or os.environ.get("LOCAL_RANK", "0") in ("", "0")


def _main() -> None:
    """Typer runs without its standalone mode so that a usage error (a mistyped flag, a value
    that does not parse, a missing argument) comes back here and is printed like every other
    bad input, one `error:` line, instead of typer's boxed panel after the usage text.
    """
    stop.signal, stop.said, stop.ending = None, False, False
    signal.signal(signal.SIGTERM, _stop_as_ctrl_c)
    try:
        code = app(prog_name="compress", standalone_mode=False)
    except SaidElsewhere:
        sys.exit(2)
    except UserError as error:
        if _another_process_says_it(error):
            _exit_after_the_speaker()
        lines = error.lines
        if debug_mode["enabled"]:
            traceback.print_exc()  # the traceback asked for, with bad input's exit code still
            lines = [line.replace(DEBUG_HINT, "") for line in lines]  # it was just shown
        for line in lines:
            _print_error(line)
        sys.exit(2)
    except BrokenPipeError:
        raise  # main() ends it quietly
    except ModuleNotFoundError as error:
        if error.name not in _TRAINING_PACKAGES or debug_mode["enabled"]:
            _crash(error)
        # A deployment box installed without torch (README: gating and ONNX validation).
        words = sys.argv[1:3] if sys.argv[1:2] == ["recipe"] else sys.argv[1:2]
        _print_error(
            f"`compress {' '.join(words)}` needs {error.name}, which is not installed; install "
            "compressor with its dependencies (without --no-deps: `pip install -e .` in a clone, "
            "or `pip install` of its wheel), or use `compress gate`, which runs without it"
        )
        sys.exit(2)
    except _UsageError as error:
        if not _speaks_for_this_machine():
            _exit_after_the_speaker()
        # A group called with no command: its help, as click shows it (on stderr, exit 2).
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # type: ignore[attr-defined]  # click's UsageError
        else:
            lines = [_usage_line(error)]
            junit = _junit_of_gate(sys.argv[1:])
            if junit is not None:
                try:
                    record_gate_error(UserError(*lines), junit)
                except UserError as both:
                    lines = both.lines
            for line in lines:
                _print_error(line)
        sys.exit(2)
    except PermissionError as error:
        # A file or folder this user may not read or write (a data folder, a teacher in a
        # folder it cannot enter): the system's refusal, not a bug, wherever it surfaced.
        if debug_mode["enabled"]:
            traceback.print_exc()
        where = f"{error.filename}: " if error.filename else ""
        _print_error(
            f"{where}{error.strerror or 'permission denied'}; give this user access to it "
            "(read, or write where compress writes) and to the folders above it"
        )
        sys.exit(2)
    except OSError as error:
        if error.errno not in _NO_SPACE:
            _crash(error)
        # Output to a full disk or /dev/full: where it went is full, which is no bug here.
        _print_error(f"cannot write the output ({error.strerror}); free space where it goes")
        sys.exit(2)
    except Exception as error:
        _crash(error)
    # typer.Exit(n), --help and Ctrl-C (130) come back as the exit code; commands return None.
    code = code if isinstance(code, int) else 0
    if code == _CTRL_C_EXIT:
        sigterm = stop.signal == signal.SIGTERM
        if not stop.said and _speaks_for_this_machine():  # typer exited 130 silently
            error_console.print(f"stopped by {'SIGTERM' if sigterm else 'Ctrl-C'}", highlight=False)
        if sigterm:
            code = _SIGTERM_EXIT  # a scheduler reads 128 + 15 as "stopped by my SIGTERM"
    sys.stdout.flush()  # a closed pipe shows here, where main() handles it, not at exit
    sys.exit(code)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _crash(error: BaseException) -> NoReturn:
    """An exception nobody expected: a bug in compressor or in code a recipe runs (a teacher
    entrypoint). Its traceback is what fixes it, so it is always shown; the exit code is its
    own, so a CI job does not read a crash as 1 (a failed check) or 2 (bad input)."""
    shadow = _shadowing_export_module()
    if shadow is not None and isinstance(error, ImportError) and not debug_mode["enabled"]:
        _print_error(
            f"{shadow} stands in for compressor's `export` package, as its folder comes first "
            "on the module path (PYTHONPATH, or the working folder); rename that file, or "
            "leave its folder out of PYTHONPATH"
        )
        sys.exit(2)
    traceback.print_exception(error)
    _print_error(
        f"compress crashed ({type(error).__name__}: {error}): a bug, not bad input or a failed "
        "check; the traceback above says where (in compressor, or in code the recipe runs)"
    )
    sys.exit(_CRASH_EXIT)


def _shadowing_export_module() -> str | None:
    """The file imported as `export` where it is not compressor's own package (installed
    beside `compressor`): a user's export.py, common in ML projects, in a folder that
    PYTHONPATH names, as the README's entrypoint recipes have users set it."""
    module = sys.modules.get("export")
    found = getattr(module, "__file__", None)
    if not isinstance(found, str):
        return None
    ours = Path(__file__).resolve().parents[1] / "export" / "__init__.py"
    return None if Path(found).resolve() == ours else found


_TRAINING_PACKAGES = ("torch", "torchvision")
_CRASH_EXIT = 3
_CTRL_C_EXIT = 128 + signal.SIGINT
_SIGTERM_EXIT = 128 + signal.SIGTERM
_BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE (13); Windows has no signal.SIGPIPE to compute it from


def _stop_as_ctrl_c(signum: int, frame: object) -> None:
    """Ctrl-C, and SIGTERM taking its path: KeyboardInterrupt, with the signal remembered, so
    that the exit code says which, and so that an error a library made of the interrupt
    (torch's exporter wraps it in its own) is still known as a stop (export/onnx_export.py).

    Once: a Ctrl-C pressed again while the command handles the first (writing the manifest
    that says where it stopped) cut that short with a second traceback. The first signal is
    the one the exit code tells."""
    first = stop.signal is None
    if first:
        stop.signal = signum
    if first and not stop.ending:
        raise KeyboardInterrupt


# typer raises click's UsageError: its own copy of click since typer 0.2x, click itself before.
# The public typer.BadParameter subclasses it in both layouts, so it names the class in either.
_UsageError: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError"
)


def _usage_line(error: Exception) -> str:
    """click's message on one line, and where the command's options are listed."""
    message = " ".join(error.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    # Some typer releases (0.18-0.20 with click 8.5) add their suggestion to click's own.
    message = re.sub(r"(Did you mean [^?]+\?)(?: \1)+", r"\1", message)
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    misplaced = _misplaced_root_option(error, context)
    if misplaced is not None:
        return misplaced
    see = " See" if message.endswith("?") else "; see"  # after "Did you mean 'distill'?"
    return f"{message}{see} `{context.command_path} --help`"


def _misplaced_root_option(error: Exception, context: typer.Context) -> str | None:
    """`compress distill r.yaml --debug`: click says only "No such option", as --debug and
    --version belong to `compress` itself; say where they go, with the command fixed."""
    option = getattr(error, "option_name", None)
    root = context.find_root()
    if type(error).__name__ != "NoSuchOption" or context is root or not isinstance(option, str):
        return None
    if not any(option in param.opts for param in root.command.params):
        return None
    words = list(sys.argv[1:])
    if option in words:
        words.remove(option)
    fixed = ["compress", option] if option == "--version" else ["compress", option, *words]
    return (
        f"{option} is an option of compress itself, not of `{context.command_path}`; put it "
        f"before the command: `{shlex.join(fixed)}`"
    )


def _junit_of_gate(argv: list[str]) -> Path | None:
    """The --junit file of a `compress gate` command line, for a usage error typer raised
    before the command could record it."""
    if "gate" not in argv:
        return None
    for index, argument in enumerate(argv):
        if argument.startswith("--junit="):
            return Path(argument.removeprefix("--junit="))
        if argument == "--junit" and index + 1 < len(argv):
            return Path(argv[index + 1])
    return None


def _open_closed_streams() -> None:
    """A standard stream closed by the shell (`compress models >&-`) is None to Python, and
    the first print crashed on it: its output goes to the null device instead, as nobody can
    read it, and the command runs to its exit code (a gate's JUnit file is still written)."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def _exit_on_closed_pipe() -> None:
    """Exit 141 without a word: whoever read the output has stopped, and there is nobody to
    tell. Standard output and error point at the null device first, so that flushing them
    as Python exits raises no second BrokenPipeError (the Python documentation's recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        # A stream without a file descriptor (captured by a test) has nothing to flush there.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    sys.exit(_BROKEN_PIPE_EXIT)


def _print_error(line: str) -> None:
    error_console.print(f"error: {line}", highlight=False, soft_wrap=True)
