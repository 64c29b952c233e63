"""The CLI's one exit-code contract, for every way a command can end.

0: done. 1: only ever a verified difference between two databases. 2: everything else, bad
input and failures alike, and also any exception nobody expected: that one still gets a
message naming the command and the file being read, a fix line asking for a bug report with
that file, and (under --json) a JSON document like every other outcome; never a traceback.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError, VerificationFailedError
from chroma_migrate.native.reading import forget, last_read

Outcome = tuple[dict[str, Any], str, int]
BUG_FIX = "this looks like a bug in chroma-migrate: report it with this file"
OS_FIX = "Check the path, its permissions and the free disk space; the source was not modified."


def run_command(command: str, inputs: Sequence[str | Path | None], action: Callable[[], Outcome],
                render_failed_verification: Callable[[dict[str, Any]], str]) -> Outcome:
    """Run one command's action and map whatever it raises to (document, text, exit code)."""
    forget()
    try:
        return action()
    except VerificationFailedError as exc:
        document = {"error": exc.problem, "fix": exc.fix, "verification": exc.report}
        try:
            rendered = render_failed_verification(exc.report)
        except Exception:  # a report the renderer cannot draw still ends as exit 1 with its problem
            rendered = ""
        return document, f"error: {exc.problem}\n{rendered}\n{exc.fix}", exc.exit_code
    except MigrationError as exc:
        return exc.to_dict(), f"error: {exc.problem}\nfix: {exc.fix}", 2  # 1 belongs to verification alone
    except OSError as exc:
        problem = f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
        return {"error": problem, "fix": OS_FIX}, f"error: {problem}\nfix: {OS_FIX}", 2
    except Exception as exc:  # the contract: nothing escapes as a traceback or as exit 1
        return unexpected(command, inputs, exc)


def unexpected(command: str, inputs: Sequence[str | Path | None], exc: BaseException) -> Outcome:
    """Exit 2 for an exception no check anticipated, naming the command, the file and where it was raised."""
    file = last_read() or ", ".join(str(i) for i in inputs if i) or "(no file was being read)"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    problem = (f"chroma-migrate {command} failed unexpectedly while reading {file}: "
               f"{type(exc).__name__}: {str(exc)[:300]} (at {where})")
    fix = f"{BUG_FIX} ({file}) and this message; nothing was modified."
    document = {"error": problem, "fix": fix, "kind": "unexpected_error", "file": file, "command": command,
                "exception": type(exc).__name__}
    return document, f"error: {problem}\nfix: {fix}", 2
