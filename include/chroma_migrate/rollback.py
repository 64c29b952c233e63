"""Rolling a collection back: which version to return to, and the current data rebuilt into its format.

A plain rollback swaps the pointers back (publishing.swap_pointers). Records written since the
migration exist only in the live version, so `rebuild_current` rebuilds that version's data in
the older version's chromadb format and publishes it as a new version instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import describe_database
from chroma_migrate.migrate import MigrationRequest, migrate
from chroma_migrate.pipeline import RunPaths
from chroma_migrate.publishing import LiveSide, choose_version_id, swap_pointers, upload_version
from chroma_migrate.run_types import Stage
from chroma_migrate.snapshots.manifest import MANIFEST_NAME
from chroma_migrate.strategy import Strategy


@dataclass(frozen=True)
class RollbackChoice:
    current: str
    to_version_id: str
    written_since_migration: bool


def choose_rollback(live: LiveSide, asked: str | None) -> RollbackChoice:
    """The live version and the one to return to (asked, else the one before the live one; kept on
    a rerun). The default is never a prefix without a manifest: that may be an upload that died
    halfway; a pre-manifest (legacy) snapshot can still be named explicitly."""
    store = live.snapshots
    resolved = live.ledger.outcome(live.collection, live.run_key, Stage.ROLLBACK_SOURCE, 0) or {}
    current = resolved.get("version_id") or store.read_pointer()
    others = [v for v in store.list_versions() if v != current]
    earlier = [v for v in others if v < current and store.version_exists(v)]
    to_version = resolved.get("to_version_id") or asked or (earlier[-1] if earlier else None)
    if not to_version or not store.version_in_use(to_version):
        raise MigrationError(f"No version to roll back to: asked {asked!r}, live is {current}, "
                             f"others are {others or 'none'}.", "Pass to_version_id naming an existing version.")
    manifest = store.read_manifest(live.layout.version_prefix(current)) or {}
    if not resolved:
        live.ledger.record_done(live.collection, live.run_key, Stage.ROLLBACK_SOURCE, 0,
                                {"version_id": current, "to_version_id": to_version})
    return RollbackChoice(current, to_version, "migrated_from" not in manifest and "rolled_back_from" not in manifest)


def rebuild_and_publish(live: LiveSide, paths: RunPaths, old_copy: Path, current: str) -> dict[str, Any]:
    """The live data (staged at `paths.source`) rebuilt in `old_copy`'s chromadb format, verified,
    uploaded as a new version and made live."""
    old_format = describe_database(old_copy).written_by[-1]
    rebuilt, source = paths.root / "rebuilt", paths.root / "rebuild-source"
    for folder in (rebuilt, source):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(paths.source, source, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    result = migrate(MigrationRequest(source, rebuilt, old_format, strategy=Strategy.REBUILD.value), log=live.log)
    version_id = choose_version_id(live)
    upload_version(live, rebuilt, version_id, {"run_key": live.run_key, "rolled_back_from": current,
                                               "chromadb_version": old_format, "strategy": "rebuild"})
    outcome = swap_pointers(live, expected=current, version_id=version_id, local_copy=rebuilt)
    records = {c["collection"]: c["records"]["target_count"] for c in result["verification"]["collections"]}
    return outcome | {"rebuilt": True, "chromadb_version": old_format, "records": records}
