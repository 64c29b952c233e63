"""One builder at a time per cached fixture, across processes (`make test` runs two pytest workers).

The builders write to a staging folder and rename it into place; the lock keeps a second process
from building the same fixture into the same staging folder at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chroma_migrate.file_lock import file_lock


def build_once(target: Path, is_built: Callable[[], bool], build: Callable[[], None]) -> None:
    """Run `build` unless `is_built()`, asked again under `target`'s lock (another worker may have built it)."""
    if is_built():
        return
    with file_lock(target.with_name(target.name + ".lock")):
        if not is_built():
            build()
