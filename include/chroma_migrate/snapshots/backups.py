"""Which copy of a version a rollback can return to: its own prefix, else one of its backups.

Every migration's `backup` task copies the live version to `backups/{run_key}/{version_id}/`,
manifest last (S3SnapshotStore.copy_version). Any finished backup of a version holds the same
bytes under the version's own manifest, so any backup of it will do, as long as its objects
still match that manifest. Each backup is checked in turn and the first that verifies is used.
The order only decides which one is downloaded first. Pure logic: the caller passes in the
listing and the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from chroma_migrate.errors import MigrationError
from chroma_migrate.snapshots.errors import SnapshotError, SnapshotIntegrityError, VersionMissingError


def backups_of(backups: Mapping[str, str], version_id: str) -> list[str]:
    """The backup prefixes holding `version_id` (from S3SnapshotStore.list_backups), last-listed first."""
    return sorted((prefix for prefix, held in backups.items() if held == version_id), reverse=True)


def default_rollback_target(current: str, versions: Iterable[str], is_complete: Callable[[str], bool],
                            backed_up: Iterable[str]) -> str | None:
    """The newest version before `current` that can be returned to: its prefix is complete (has
    its manifest), or a finished backup of it exists. A prefix without a manifest and without a
    backup may be an upload that died halfway, so it is never chosen by default."""
    backed = set(backed_up)
    for version_id in sorted(set(versions) | backed, reverse=True):
        if version_id < current and (version_id in backed or is_complete(version_id)):
            return version_id
    return None


def first_verified(prefixes: Iterable[str], verify: Callable[[str], str | None]) -> tuple[str | None, dict[str, str]]:
    """The first prefix `verify` accepts (it returns None, or what is wrong with it), and the
    problems of those tried before it. Stops at the first that passes, so whatever `verify`
    staged is that prefix's copy."""
    failures: dict[str, str] = {}
    for prefix in prefixes:
        problem = verify(prefix)
        if problem is None:
            return prefix, failures
        failures[prefix] = problem
    return None, failures


def unusable_reason(error: SnapshotError, where: str, url: Callable[[str], str]) -> str:
    """A copy's problem as one clause ("s3://…/ is missing"), naming the bad object's key, so the
    operator knows exactly what to restore."""
    if isinstance(error, VersionMissingError):
        return f"{where} is missing (no objects)"
    if isinstance(error, SnapshotIntegrityError) and error.keys:
        more = f" and {len(error.keys) - 1} more" if len(error.keys) > 1 else ""
        return f"{where} mismatches its manifest at key {url(error.keys[0])}{more} ({error.problems[0]})"
    return f"{where} failed its manifest check: {error.problem}"


def no_usable_copy(version_id: str, version_problem: str, backups_root: str,
                   failures: Mapping[str, str]) -> MigrationError:
    """The refusal when neither the version's prefix nor any backup of it can be trusted."""
    tried = ("; ".join(failures.values()) if failures else "none was found")
    return MigrationError(
        f"Cannot roll back to {version_id}: the version prefix {version_problem}, and no verified backup of it "
        f"exists under {backups_root} ({tried}).",
        "Nothing live was changed. Restore the named objects from another copy, or pass to_version_id naming "
        "another version.",
    )
