"""Room on the staging disk: checked before a run downloads anything, cleaned up when it runs out.

A run's staging folder holds, at its peak (during verification), the downloaded source, the
new database, the verifier's private copies of both and the batch files: about
`SPACE_FACTOR` times the snapshot. Checking that up front turns a disk that is too small into
a refusal before any work; a disk that fills up anyway (another run, another tenant) ends the
step with a message naming the folder, after removing the step's half-written files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from chroma_migrate.errors import MigrationError

SPACE_FACTOR = 5
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_MESSAGES = ("No space left on device", "database or disk is full", "Disk quota exceeded")


class StagingSpaceError(MigrationError):
    """The staging disk has, or had, too little room; the message names the folder."""


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files below `path` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat(follow_symlinks=False).st_size
    return total


def check_staging_space(run_root: Path, snapshot_bytes: int, setting: str) -> None:
    """Refuse a run whose staging disk cannot hold SPACE_FACTOR × the snapshot (what it staged already counts)."""
    run_root.mkdir(parents=True, exist_ok=True)
    need = SPACE_FACTOR * snapshot_bytes - tree_bytes(run_root)
    free = shutil.disk_usage(run_root).free
    if free < need:
        raise StagingSpaceError(
            f"The staging disk of {run_root} has {free:,} bytes free; this run needs about {need:,} more "
            f"({SPACE_FACTOR} x the {snapshot_bytes:,}-byte snapshot: the source, the new database, the verifier's "
            "copies of both and the batch files). Nothing was downloaded or locked.",
            f"Free space there, or point {setting} at a larger volume, and trigger the run again.",
        )


def is_disk_full(error: BaseException) -> bool:
    """An OSError for a full disk, or a child process (chromadb, SQLite) that reported one."""
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    text = f"{error} {getattr(error, 'stderr_tail', '')}"
    return any(marker in text for marker in _FULL_MESSAGES)


@contextlib.contextmanager
def cleaned_when_full(what: str, folder: Path, *leftovers: Path) -> Iterator[None]:
    """Turn a full disk during `what` into a StagingSpaceError, after removing `leftovers`."""
    try:
        yield
    except Exception as error:
        if not is_disk_full(error):
            raise
        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)
        removed = f" Removed the partial {', '.join(p.name for p in leftovers)}." if leftovers else ""
        raise StagingSpaceError(
            f"The staging disk of {folder} filled up while {what} ({type(error).__name__}: {error}).{removed} "
            "Nothing live was changed.",
            "Free space on that volume (or point staging_root at a larger one), then clear the failed task: "
            "the run resumes from its finished steps.",
        ) from error
