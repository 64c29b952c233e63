"""The live writes: publish the new snapshot and swap the pointers, or roll them back.

Ownership of the lock is checked immediately before each live write, and the S3 pointer
is only replaced if it still names the version this run started from.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chroma_migrate.faults import fault_point
from chroma_migrate.inspection import describe_database
from chroma_migrate.migrate import MigrationRequest, migrate
from chroma_migrate.snapshots.errors import PointerChangedError, SnapshotError
from chroma_migrate.snapshots.layout import new_version_id
from chroma_migrate.snapshots.manifest import MANIFEST_NAME
from chroma_migration.work_operators import LockedStepOperator


class PublishSnapshotOperator(LockedStepOperator):
    """Upload the verified database as a new version, then point S3 and EFS at it."""

    stage = "publish"

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            self.log.info("Already published in this run: %s", finished["version_id"])
            return finished
        state = self.state
        version_id = choose_version_id(self)
        plan = json.loads(state.paths.plan_file.read_text())
        upload_version(self, state.paths.target, version_id, {
            "run_key": state.run_key, "run_id": state.run_id, "migrated_from": state.source_version_id,
            "chromadb_version": plan["target_version"], "strategy": plan["strategy"],
            "verification_report": self.hook.report_prefix(state.run_key),
        })
        outcome = swap_pointers(self, expected=state.source_version_id, version_id=version_id,
                                local_copy=state.paths.target)
        return self.record(0, outcome | {"chromadb_version": plan["target_version"]})


def choose_version_id(step: LockedStepOperator) -> str:
    """Chosen once per run and recorded, so a retry uploads to the same new prefix."""
    ledger, state = step.hook.ledger, step.state
    chosen = ledger.outcome(step.collection, state.run_key, "publish-version", 0)
    if chosen:
        return chosen["version_id"]
    version_id = new_version_id(datetime.now(UTC), step.hook.s3.version_in_use)
    ledger.record_done(step.collection, state.run_key, "publish-version", 0, {"version_id": version_id})
    return version_id


def upload_version(step: LockedStepOperator, source: Path, version_id: str, extra: dict[str, Any]) -> None:
    """Upload once: a complete upload by this run is kept, a partial one of ours is redone."""
    store, state = step.hook.s3, step.state
    prefix = step.hook.layout.version_prefix(version_id)
    if store.version_exists(version_id):
        manifest = store.read_manifest(prefix) or {}
        if manifest.get("run_key") != state.run_key:
            raise SnapshotError(f"{store.url(prefix)} was completed by another run ({manifest.get('run_key')}).",
                                "Clear this run's publish-version ledger entry to pick a new id.")
        step.log.info("Version %s was already uploaded by this run", version_id)
        return
    if store.version_in_use(version_id):
        # Our own earlier attempt died mid-upload (the id is recorded for this run only): start over.
        keys = list(store.list_objects(prefix))
        step.log.info("Removing %d objects of an interrupted upload of %s", len(keys), version_id)
        for start in range(0, len(keys), 1000):
            step.hook.s3_client.delete_objects(
                Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
    step.assert_lock_held()
    store.upload(source, version_id, extra)
    step.log.info("Uploaded %s as %s", source, store.url(prefix))


def swap_pointers(step: LockedStepOperator, *, expected: str, version_id: str, local_copy: Path,
                  allow_legacy: bool = False) -> dict[str, Any]:
    """Make `version_id` live: EFS copy first (not yet visible), then the S3 pointer (the master
    copy), then the EFS pointer.

    Both pointers must still name `expected` (or already `version_id`, on a rerun that died
    between the two writes). The S3 write is conditional on the ETag of the pointer it checked,
    the EFS switch on the pointer it read, and the lock (owner and fence) is checked right
    before each write. `allow_legacy` is for a rollback to a snapshot without a manifest only.
    """
    store, efs = step.hook.s3, step.hook.efs
    current = store.read_pointer()
    if current not in (expected, version_id):
        raise PointerChangedError(
            f"The live pointer of {step.collection!r} moved from {expected} to {current} during this run.",
            "Nothing was swapped. Rerun the migration from the new live version.",
        )
    efs_current = efs.read_pointer()
    if efs_current not in (expected, version_id):
        raise PointerChangedError(
            f"The EFS pointer {step.hook.layout.efs_pointer_path()} names {efs_current}, not {expected} (the S3 "
            f"pointer this run started from).",
            "Nothing was swapped. Bring EFS in line with S3 (the compactor's sync) and rerun.",
        )
    efs.materialize(local_copy, version_id)
    if current != version_id:
        store.write_pointer(version_id, expected=expected, allow_legacy=allow_legacy, guard=step.assert_lock_held)
        step.log.info("S3 pointer %s: %s -> %s", store.url(step.hook.layout.pointer_key()), expected, version_id)
    fault_point("between_pointers")
    if efs_current != version_id:
        step.assert_lock_held()
        efs.switch_pointer(version_id, expected=efs_current)
        step.log.info("EFS pointer %s: %s -> %s", step.hook.layout.efs_pointer_path(), efs_current, version_id)
    return {"version_id": version_id, "previous_version_id": expected, "s3_pointer": version_id,
            "efs_pointer": version_id, "efs_path": str(step.hook.layout.efs_version_dir(version_id))}


class RollbackOperator(LockedStepOperator):
    """Point S3 and EFS back at an earlier version, or rebuild the current data into its format.

    `rollback` (templated, from the resolve task) names the version to go back to and
    whether to rebuild: rebuilding keeps records written since the migration, which a plain
    pointer swap would leave behind.
    """

    template_fields = (*LockedStepOperator.template_fields, "rollback")
    stage = "rollback"

    def __init__(self, *, rollback: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollback = rollback

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            return finished
        state, plan = self.state, self.rollback
        old = state.paths.root / "rollback-target"
        if not plan["rebuild_current"]:
            outcome = swap_pointers(self, expected=state.source_version_id, version_id=plan["to_version_id"],
                                    local_copy=old, allow_legacy=True)
            return self.record(0, outcome | {"rebuilt": False})
        old_format = describe_database(old).written_by[-1]
        rebuilt = state.paths.root / "rebuilt"
        shutil.rmtree(rebuilt, ignore_errors=True)
        source = state.paths.root / "rebuild-source"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(state.paths.source, source, ignore=shutil.ignore_patterns(MANIFEST_NAME))
        result = migrate(MigrationRequest(source, rebuilt, old_format, strategy="rebuild"), log=self.log.info)
        version_id = choose_version_id(self)
        upload_version(self, rebuilt, version_id, {
            "run_key": state.run_key, "rolled_back_from": state.source_version_id, "chromadb_version": old_format,
            "strategy": "rebuild"})
        outcome = swap_pointers(self, expected=state.source_version_id, version_id=version_id, local_copy=rebuilt)
        return self.record(0, outcome | {"rebuilt": True, "chromadb_version": old_format,
                                         "records": {c["collection"]: c["records"]["target_count"]
                                                     for c in result["verification"]["collections"]}})
