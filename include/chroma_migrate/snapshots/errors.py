"""Snapshot errors: each says what is wrong with the live state and what to do about it."""

from __future__ import annotations

from chroma_migrate.errors import MigrationError


class SnapshotError(MigrationError):
    """Base class, so the DAG can tell snapshot-store problems from engine problems."""


class InvalidVersionIdError(SnapshotError):
    """A version id (often read from a pointer body, i.e. user data) has the wrong shape."""


class PointerMissingError(SnapshotError):
    """The latest-pointer object or file does not exist: there is no live version to migrate."""


class VersionExistsError(SnapshotError):
    """A write would land on a prefix or directory that already holds a (different) snapshot."""


class VersionMissingError(SnapshotError):
    """The named snapshot version does not exist (no objects under its prefix, or no directory)."""


class ManifestError(SnapshotError):
    """A manifest.json that cannot be parsed or does not have the documented shape."""


class SnapshotIntegrityError(SnapshotError):
    """Files differ from their manifest; `problems` lists each one by file name, `keys` (where
    known) the stored object of each, so a caller can name exactly what is damaged."""

    def __init__(self, problem: str, fix: str, problems: list[str], keys: list[str] | None = None) -> None:
        super().__init__(problem, fix)
        self.problems = problems
        self.keys = list(keys or [])


class PointerChangedError(SnapshotError):
    """The pointer moved since the migration read it (someone else published): refuse to swap."""


class LockHeldError(SnapshotError):
    """Someone else (usually the compactor) holds the collection lock."""

    def __init__(self, problem: str, fix: str, *, owner: str | None, expires: str | None) -> None:
        super().__init__(problem, fix)
        self.owner = owner
        self.expires = expires


class LockLostError(SnapshotError):
    """We no longer hold the lock we took: every live write must stop."""

    def __init__(self, problem: str, fix: str, *, owner: str | None, expires: str | None) -> None:
        super().__init__(problem, fix)
        self.owner = owner
        self.expires = expires
