"""An exclusive lock between processes, held on a small file beside what it guards.

Runtimes, resolved runtime files and the test fixtures are each built by whichever process
needs them first; the others wait on the lock and then find the result in place. The lock
file stays (removing it would race with a process waiting on it).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive flock of `path` (created, with its folder, if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
