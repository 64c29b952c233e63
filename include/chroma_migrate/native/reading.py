"""Which file the native reader touched last: what a bug report about an unexpected failure must name.

The CLI turns any exception it did not expect into exit 2 with "report it with this file";
the reader notes each file as it opens or reads it (one assignment, no I/O), so that
sentence can name the damaged file rather than only the folder the user passed.
"""

from __future__ import annotations

from pathlib import Path

_last: list[str] = []


def note_reading(path: Path | str) -> None:
    if _last:
        _last[0] = str(path)
    else:
        _last.append(str(path))


def last_read() -> str | None:
    return _last[0] if _last else None


def forget() -> None:
    _last.clear()
