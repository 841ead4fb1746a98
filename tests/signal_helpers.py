"""Start `compress` in a real child process that gets a real SIGINT at a chosen moment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# os.kill(pid, SIGINT) on Windows terminates the process (the pytest worker with it), and
# Popen.send_signal(SIGINT) raises: signal.SIGINT exists there, so it cannot be the test.
needs_posix_signals = pytest.mark.skipif(
    sys.platform == "win32", reason="needs POSIX signals (os.kill with SIGINT or SIGTERM)"
)

# The child sends itself SIGINT the moment it starts importing `module`: a Ctrl-C typed
# while that import runs, on time however slow or busy the machine is.
_CTRL_C_DURING_IMPORT = """
import os, signal, sys

module = sys.argv.pop(1)


class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlC())
if os.environ.get("CTRL_C_AGAIN"):  # pressed again, and again as the process ends
    import atexit

    def again():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    atexit.register(again)
from compressor.__main__ import main

main()
"""


def ctrl_c_while_importing(
    module: str, *args: str, again: bool = False
) -> subprocess.CompletedProcess[str]:
    """`compress ARGS`, through the console script's function, Ctrl-C'd importing `module`;
    `again`: twice more as the process ends."""
    return subprocess.run(
        [sys.executable, "-c", _CTRL_C_DURING_IMPORT, module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CTRL_C_AGAIN": "1" if again else ""},
    )
