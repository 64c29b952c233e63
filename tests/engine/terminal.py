"""Running the CLI with its stderr on a pseudo-terminal, as an engineer's shell would."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading

from tests.conftest import CLI, REPO


def run_on_terminal(args: list[str], stdout_to_terminal: bool, env: dict[str, str] | None = None,
                    ) -> tuple[str, str, int]:
    """Run the CLI with stderr (and stdout, if asked) on a pseudo-terminal 120 columns wide;
    returns (what the terminal showed, what a stdout pipe got, exit code)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**(env or os.environ), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([*CLI, *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stderr=terminal,
                               stdout=terminal if stdout_to_terminal else subprocess.PIPE)
    os.close(terminal)
    shown = bytearray()
    reader = threading.Thread(target=lambda: shown.extend(_drain(controller)), daemon=True)
    reader.start()
    piped = process.stdout.read().decode() if process.stdout else ""
    code = process.wait(timeout=120)
    reader.join(timeout=10)
    os.close(controller)
    return shown.decode(errors="replace"), piped, code


def _drain(controller: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
