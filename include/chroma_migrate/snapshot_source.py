"""The first steps of a run on the live system: which version to work from, staged locally once.

Written against the store interfaces (snapshots/interfaces.py). Everything is recorded in the
run's ledger, so a retried or cleared run keeps the version it started from: by then the live
pointer may name this run's own new version (a run that died between the two pointer writes).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import DatabaseInfo, describe_database
from chroma_migrate.native import check_integrity
from chroma_migrate.pipeline import RunPaths
from chroma_migrate.publishing import LiveSide
from chroma_migrate.run_types import Stage
from chroma_migrate.snapshots.backups import backups_of, first_verified, no_usable_copy, unusable_reason
from chroma_migrate.snapshots.errors import ManifestError, SnapshotIntegrityError, VersionMissingError
from chroma_migrate.snapshots.interfaces import SnapshotStore
from chroma_migrate.snapshots.manifest import MANIFEST_NAME, check_directory, read_manifest_file
from chroma_migrate.staging_space import check_staging_space, cleaned_when_full

SOURCE_MARKER = "source.json"


@dataclass(frozen=True)
class StagedSource:
    """The version a run works from, downloaded and checked, and what it holds."""

    version_id: str
    manifest_checked: bool
    info: DatabaseInfo


def resolve_source(live: LiveSide, paths: RunPaths, asked: str | None, setting: str) -> StagedSource:
    """The version to migrate (asked, else the live one; kept on a rerun), downloaded and checked:
    the manifest proves the bytes are the ones uploaded, the integrity check that they are a sound
    database (the compactor may have uploaded a damaged one; legacy snapshots have no manifest)."""
    resolved = live.ledger.outcome(live.collection, live.run_key, Stage.SOURCE, 0)
    version_id = resolved["version_id"] if resolved else asked or live.snapshots.read_pointer()
    if not live.snapshots.version_in_use(version_id):
        where = live.snapshots.url(live.layout.version_prefix(version_id))
        raise MigrationError(f"No snapshot {version_id!r} under {where}.",
                             "Pass an existing source_version_id, or leave it empty for the live pointer.")
    facts = download_snapshot(live, paths, version_id, setting)
    check_integrity(paths.source)
    if not resolved:
        live.ledger.record_done(live.collection, live.run_key, Stage.SOURCE, 0, {"version_id": version_id})
    return StagedSource(version_id, bool(facts["manifest_checked"]), describe_database(paths.source))


def download_snapshot(live: LiveSide, paths: RunPaths, version_id: str, setting: str) -> dict[str, Any]:
    """Download once per run: a marker names the version (and the sha256 of its manifest) the staged
    copy came from, and every later task of the run reads that copy on the shared staging root.

    A retried task reuses the staged copy only after re-hashing it against its manifest (someone may
    have changed the staging folder, or the version's manifest in S3 may differ from the one staged);
    anything else is downloaded again. Checks first that the staging disk has room for the whole run
    (`setting` names the configuration key to change), and removes a half-downloaded copy when the
    disk fills.
    """
    marker = paths.root / SOURCE_MARKER
    if marker.is_file() and paths.source.is_dir():
        facts = json.loads(marker.read_text())
        if facts.get("version_id") == version_id and _staged_copy_still_good(paths.source, facts):
            return facts
        live.log(f"The staged copy of {version_id} in {paths.source} is not the version's bytes: downloading again")
    partial = paths.root / "source.downloading"
    shutil.rmtree(partial, ignore_errors=True)
    snapshot_bytes = sum(live.snapshots.list_objects(live.layout.version_prefix(version_id)).values())
    check_staging_space(paths.root, snapshot_bytes, setting)
    with cleaned_when_full(f"downloading {version_id}", paths.root, partial):
        manifest = live.snapshots.download(version_id, partial)
    shutil.rmtree(paths.source, ignore_errors=True)
    partial.rename(paths.source)
    facts = {"version_id": version_id, "manifest_checked": manifest is not None,
             "files": len((manifest or {}).get("files", {})),
             "manifest_sha256": _manifest_sha256(paths.source) if manifest is not None else None}
    marker.write_text(json.dumps(facts))
    return facts


def _manifest_sha256(directory: Path) -> str:
    return hashlib.sha256((directory / MANIFEST_NAME).read_bytes()).hexdigest()


def _staged_copy_still_good(directory: Path, facts: dict[str, Any]) -> bool:
    """The staged copy is the one the marker names, file for file (re-hashed); a legacy snapshot
    without a manifest has nothing to prove itself with and is downloaded again."""
    if not facts.get("manifest_sha256") or not (directory / MANIFEST_NAME).is_file():
        return False
    if _manifest_sha256(directory) != facts["manifest_sha256"]:
        return False
    manifest = read_manifest_file(directory)
    return manifest is not None and not check_directory(directory, manifest)


@dataclass(frozen=True)
class RollbackSource:
    """Where the staged copy of the version to return to came from: its own prefix, or (when that
    is missing or fails its manifest) a verified backup, with what was wrong with the prefix."""

    version_id: str
    source_url: str
    restored_from_backup: str | None = None
    version_problem: str | None = None

    def describe(self) -> str:
        """One sentence for the log, the XCom and the approval body."""
        if self.restored_from_backup is None:
            return f"from its version prefix {self.source_url}"
        return (f"restored from the verified backup {self.source_url} as a new version "
                f"({self.version_problem})")


def stage_rollback_target(live: LiveSide, version_id: str, folder: Path, *, legacy_ok: bool) -> RollbackSource:
    """The version to return to, downloaded into `folder` once and checked, from the first copy
    that proves its bytes: the version prefix, else its backups. `legacy_ok` (a version named
    explicitly) accepts a prefix without a manifest, as a plain rollback always has; by default
    only a manifest-checked copy counts. A marker beside `folder` keeps the choice for a rerun."""
    marker = folder.with_name(folder.name + ".json")
    if folder.is_dir() and marker.is_file():
        staged = RollbackSource(**json.loads(marker.read_text()))
        if staged.version_id == version_id:
            return staged
    partial = folder.with_name(folder.name + ".downloading")
    folder.parent.mkdir(parents=True, exist_ok=True)
    source = _stage_first_usable(live, version_id, partial, legacy_ok)
    check_integrity(partial)
    shutil.rmtree(folder, ignore_errors=True)
    marker.write_text(json.dumps(asdict(source)))
    partial.rename(folder)
    return source


def _stage_first_usable(live: LiveSide, version_id: str, partial: Path, legacy_ok: bool) -> RollbackSource:
    """`partial` filled from the version prefix if it checks out, else from the first verified backup."""
    store = live.snapshots
    prefix = live.layout.version_prefix(version_id)
    problem = _download_checked(store, prefix, version_id, partial, legacy_ok)
    if problem is None:
        return RollbackSource(version_id, store.url(prefix))
    live.log(f"Cannot roll back from the version prefix: {problem}; looking for a verified backup")
    candidates = backups_of(store.list_backups(), version_id)
    chosen, failures = first_verified(
        candidates, lambda backup: _download_checked(store, backup, version_id, partial, legacy_ok=False))
    if chosen is None:
        raise no_usable_copy(version_id, problem, store.url(live.layout.backups_root()), failures)
    return RollbackSource(version_id, store.url(chosen), chosen, problem)


def _download_checked(store: SnapshotStore, prefix: str, version_id: str, partial: Path,
                      legacy_ok: bool) -> str | None:
    """None when `partial` now holds the prefix's bytes, checked against its manifest (or a legacy
    snapshot's, where allowed); else what is wrong with that copy, naming the bad key."""
    shutil.rmtree(partial, ignore_errors=True)
    try:
        manifest = store.download_prefix(prefix, version_id, partial)
    except (VersionMissingError, SnapshotIntegrityError, ManifestError) as error:
        return unusable_reason(error, store.url(prefix), store.url)
    if manifest is None and not legacy_ok:
        return f"{store.url(prefix)} has no {MANIFEST_NAME} (an unfinished copy)"
    return None
