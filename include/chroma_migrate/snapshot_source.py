"""The first steps of a run on the live system: which version to work from, staged locally once.

Written against the store interfaces (snapshots/interfaces.py). Everything is recorded in the
run's ledger, so a retried or cleared run keeps the version it started from: by then the live
pointer may name this run's own new version (a run that died between the two pointer writes).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import DatabaseInfo, describe_database
from chroma_migrate.native import check_integrity
from chroma_migrate.pipeline import RunPaths
from chroma_migrate.publishing import LiveSide
from chroma_migrate.run_types import Stage
from chroma_migrate.snapshots.interfaces import SnapshotStore
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
    """Download once per run: a marker names the version the staged copy came from.

    Checks first that the staging disk has room for the whole run (`setting` names the
    configuration key to change), and removes a half-downloaded copy when the disk fills.
    """
    marker = paths.root / SOURCE_MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version_id") == version_id and paths.source.is_dir():
        return json.loads(marker.read_text())
    partial = paths.root / "source.downloading"
    shutil.rmtree(partial, ignore_errors=True)
    snapshot_bytes = sum(live.snapshots.list_objects(live.layout.version_prefix(version_id)).values())
    check_staging_space(paths.root, snapshot_bytes, setting)
    with cleaned_when_full(f"downloading {version_id}", paths.root, partial):
        manifest = live.snapshots.download(version_id, partial)
    shutil.rmtree(paths.source, ignore_errors=True)
    partial.rename(paths.source)
    facts = {"version_id": version_id, "manifest_checked": manifest is not None,
             "files": len((manifest or {}).get("files", {}))}
    marker.write_text(json.dumps(facts))
    return facts


def stage_version(store: SnapshotStore, version_id: str, folder: Path) -> Path:
    """A version downloaded into `folder` once and checked as a database (never point readers at a
    damaged or half-uploaded version)."""
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".downloading")
    shutil.rmtree(partial, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    store.download(version_id, partial)
    check_integrity(partial)
    partial.rename(folder)
    return folder
