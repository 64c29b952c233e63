"""The working copy on the shared file system (EFS) that readers open, and its pointer file.

Readers may look at any moment, so a version directory appears whole (copied into a temporary
sibling, then renamed) and the pointer changes by `os.replace` (a reader sees old or new, never
a partial file).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    file_problems,
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
    """Copy one file and fsync it, so the rename that publishes the directory publishes its bytes.

    `os.copy_file_range` lets the kernel copy inside one file system (a reflink on XFS/btrfs, a
    server-side copy on NFS 4.2) without the bytes passing through this process; it is still a
    copy with its own inode, never a hard link, so a reader that later writes to one version's
    file (every 1.x open writes chroma.sqlite3) cannot change the other's."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        try:
            _copy_range(reader.fileno(), writer.fileno(), os.fstat(reader.fileno()).st_size)
        except OSError:  # not supported here (another file system, an old kernel): copy through user space
            reader.seek(0)
            writer.seek(0)
            writer.truncate()
            shutil.copyfileobj(reader, writer, 1024 * 1024)
        writer.flush()
        os.fsync(writer.fileno())
    shutil.copystat(source, target)


def _copy_range(source_fd: int, target_fd: int, size: int) -> None:
    copied = 0
    while copied < size:
        step = os.copy_file_range(source_fd, target_fd, min(size - copied, 1 << 30))
        if step == 0:
            raise OSError(f"copy_file_range stopped at {copied} of {size} bytes")
        copied += step


@dataclass
class EfsCopyReport:
    """What one materialize copied: from the run's staged copy, or from the previous version's
    directory on the same file system (unchanged files)."""

    from_staging_files: int = 0
    from_staging_bytes: int = 0
    from_previous_files: int = 0
    from_previous_bytes: int = 0
    previous: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        mib = 2**20
        return (f"{self.from_staging_files} files ({self.from_staging_bytes / mib:,.1f} MiB) from the staged copy, "
                f"{self.from_previous_files} unchanged files ({self.from_previous_bytes / mib:,.1f} MiB) from "
                f"version {self.previous or '-'} on the same file system, in {self.seconds:.2f} s")


class EfsSnapshotStore:
    """Version directories and the pointer file of one collection under `{efs_root}/snapshots/`."""

    def __init__(self, layout: SnapshotLayout) -> None:
        self.layout = layout

    def materialize(self, source: Path, version_id: str, *, previous: str | None = None) -> Path:
        """Copy a snapshot directory in as `version_id` and return its directory (`materialize_changed`)."""
        return self.materialize_changed(source, version_id, previous=previous)[0]

    def materialize_changed(self, source: Path, version_id: str, *,
                            previous: str | None = None) -> tuple[Path, EfsCopyReport]:
        """Copy a snapshot directory in as `version_id`; its directory and what was copied from where.

        The copy lands in a temporary sibling, is checked against the manifest (the source's own
        manifest.json, or one built from the source), and is renamed into place. Idempotent when
        the version is already there and matches; a different existing version is never replaced.
        With `previous` (a version directory here with a manifest), files its manifest lists with
        the same sha256 and size are copied from it, inside this file system, instead of from
        `source`; the check of the whole copy proves them, and one that fails it is copied again
        from `source`.
        """
        started = time.perf_counter()
        report = EfsCopyReport()
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
            return self._accept_existing(target, manifest), report
        collection_dir = self.layout.efs_collection_dir()
        collection_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries(version_id)
        staging = collection_dir / f"{TEMP_PREFIX}{version_id}-{uuid.uuid4().hex}"
        try:
            staging.mkdir()
            unchanged = self._unchanged_in(previous, manifest) if previous and previous != version_id else {}
            report.previous = previous if unchanged else None
            files = snapshot_files(source)
            for relative, path in files.items():
                _copy_synced(unchanged.get(relative, path), staging / relative)
                size = manifest["files"].get(relative, {}).get("size", 0)
                if relative in unchanged:
                    report.from_previous_files, report.from_previous_bytes = (report.from_previous_files + 1,
                                                                              report.from_previous_bytes + size)
                else:
                    report.from_staging_files, report.from_staging_bytes = (report.from_staging_files + 1,
                                                                            report.from_staging_bytes + size)
            write_manifest_file(staging, manifest)
            bad = file_problems(staging, manifest)
            again = [name for name, _ in bad if name in unchanged]
            if again:  # the previous version's file was not what its manifest says: take ours
                for name in again:
                    _copy_synced(files[name], staging / name)
                bad = file_problems(staging, manifest)
            problems = [line for _, line in bad]
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
                    return self._accept_existing(target, manifest), report
                raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        fsync_directory(collection_dir)
        report.seconds = round(time.perf_counter() - started, 3)
        return target, report

    def _unchanged_in(self, previous: str, manifest: dict) -> dict[str, Path]:
        """Files of `manifest` whose entry (sha256, size) the previous version's own manifest
        repeats under the same name and whose file there has that size: where to copy them from."""
        directory = self.layout.efs_version_dir(validate_version_id(previous))
        try:
            old = read_manifest_file(directory)
        except SnapshotError:
            return {}
        if old is None:
            return {}
        found = {}
        for name, entry in manifest["files"].items():
            path = directory / name
            if old["files"].get(name) == entry and path.is_file() and not path.is_symlink() \
                    and path.stat().st_size == entry["size"]:
                found[name] = path
        return found

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
