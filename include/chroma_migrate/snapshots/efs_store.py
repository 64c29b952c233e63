"""The working copy on the shared file system (EFS) that readers open, and its pointer file.

Readers may look at any moment, so a version directory appears whole (copied into a temporary
sibling, then renamed) and the pointer changes by `os.replace` (a reader sees old or new, never
a partial file).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from chroma_migrate.snapshots.errors import (
    InvalidVersionIdError,
    PointerChangedError,
    SnapshotError,
    SnapshotIntegrityError,
    VersionExistsError,
    VersionMissingError,
)
from chroma_migrate.snapshots.layout import SnapshotLayout, validate_version_id
from chroma_migrate.snapshots.manifest import (
    MANIFEST_NAME,
    build_manifest,
    check_directory,
    read_manifest_file,
    snapshot_files,
    write_manifest_file,
)

TEMP_PREFIX = ".tmp-"


def fsync_directory(path: Path) -> None:
    """Make a rename or new entry in `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_synced(source: Path, target: Path) -> None:
    """Copy one file and fsync it, so the rename that publishes the directory publishes its bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)
        writer.flush()
        os.fsync(writer.fileno())
    shutil.copystat(source, target)


class EfsSnapshotStore:
    """Version directories and the pointer file of one collection under `{efs_root}/snapshots/`."""

    def __init__(self, layout: SnapshotLayout) -> None:
        self.layout = layout

    def materialize(self, source: Path, version_id: str) -> Path:
        """Copy a snapshot directory in as `version_id` and return its directory.

        The copy lands in a temporary sibling, is checked against the manifest (the source's own
        manifest.json, or one built from the source), and is renamed into place. Idempotent when
        the version is already there and matches; a different existing version is never replaced.
        """
        source = Path(source)
        target = self.layout.efs_version_dir(version_id)
        manifest = read_manifest_file(source)
        if manifest is None:
            manifest = build_manifest(source, version_id, {"built_on": "efs materialize"})
        elif manifest["version_id"] != version_id:
            raise SnapshotError(
                f"{source / MANIFEST_NAME} is the manifest of version {manifest['version_id']}, not {version_id}.",
                "Materialize the snapshot under the version id it was downloaded as.",
            )
        if target.exists():
            return self._accept_existing(target, manifest)
        collection_dir = self.layout.efs_collection_dir()
        collection_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries(version_id)
        staging = collection_dir / f"{TEMP_PREFIX}{version_id}-{uuid.uuid4().hex}"
        try:
            staging.mkdir()
            for relative, path in snapshot_files(source).items():
                _copy_synced(path, staging / relative)
            write_manifest_file(staging, manifest)
            problems = check_directory(staging, manifest)
            if problems:
                raise SnapshotIntegrityError(
                    f"Copy of {source} into {staging} does not match the manifest: " + "; ".join(problems),
                    "The source changed or is damaged; download the version again and retry.",
                    problems,
                )
            fsync_directory(staging)
            try:
                os.rename(staging, target)
            except OSError:
                if target.exists():  # another attempt published it first
                    return self._accept_existing(target, manifest)
                raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        fsync_directory(collection_dir)
        return target

    def _accept_existing(self, target: Path, manifest: dict) -> Path:
        problems = check_directory(target, manifest)
        if problems:
            raise VersionExistsError(
                f"{target} already exists and differs from the snapshot being materialized: " + "; ".join(problems),
                "A version directory is never overwritten; find out who wrote it, or publish under a new version id.",
            )
        return target

    def _remove_stale_temporaries(self, version_id: str) -> None:
        """Temporary copies of this version left by a crashed attempt (never visible to readers)."""
        for stale in self.layout.efs_collection_dir().glob(f"{TEMP_PREFIX}{version_id}-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def read_pointer(self) -> str | None:
        """The version readers open now, or None if the pointer file does not exist yet."""
        path = self.layout.efs_pointer_path()
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return None
        try:
            return validate_version_id(text)
        except InvalidVersionIdError as error:
            raise InvalidVersionIdError(
                f"The pointer file {path} does not hold a version id: {error.problem}",
                "Rewrite it with switch_pointer(version_id) for an existing version directory.",
            ) from None

    def switch_pointer(self, version_id: str, *, expected: str | None = None) -> None:
        """Point readers at an existing version directory, atomically.

        Writes a temporary file in the same directory, fsyncs it, `os.replace`s the pointer and
        fsyncs the directory. With `expected`, refuses if the pointer names another version.
        """
        target = self.layout.efs_version_dir(version_id)
        if not target.is_dir() or not any(target.iterdir()):
            raise VersionMissingError(
                f"Refusing to point {self.layout.efs_pointer_path()} at {version_id}: {target} is missing or empty.",
                "Materialize the version on EFS first (EfsSnapshotStore.materialize).",
            )
        if expected is not None:
            current = self.read_pointer()
            if current != expected:
                raise PointerChangedError(
                    f"{self.layout.efs_pointer_path()} names {current}, not {expected} as when this run started.",
                    "Another writer switched it; do not swap, rerun from the new live version.",
                )
        pointer = self.layout.efs_pointer_path()
        temporary = pointer.with_name(f"{TEMP_PREFIX}{pointer.name}-{uuid.uuid4().hex}")
        try:
            with open(temporary, "w", encoding="ascii") as handle:
                handle.write(version_id)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, pointer)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        fsync_directory(pointer.parent)

    def list_versions(self) -> list[str]:
        """Version directories, sorted; temporary copies and other entries are ignored."""
        directory = self.layout.efs_collection_dir()
        if not directory.is_dir():
            return []
        versions = []
        for entry in directory.iterdir():
            try:
                name = validate_version_id(entry.name)
            except InvalidVersionIdError:
                continue
            if entry.is_dir():
                versions.append(name)
        return sorted(versions)
