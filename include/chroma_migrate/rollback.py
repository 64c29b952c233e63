"""Rolling a collection back: which version to return to, and the current data rebuilt into its format.

A plain rollback swaps the pointers back (publishing.swap_pointers). Records written since the
migration exist only in the live version, so `rebuild_current` writes that version's data in
the older version's chromadb format, with the migration's own steps (a transplant by the plan
step, carrying each sound graph over; a batched rebuild if that fails), and publishes it as a
new version instead.

When the version to return to has lost its prefix (a lifecycle rule, a clean-up) or its objects
no longer match its manifest, the staged copy comes from a verified backup of it
(snapshot_source.stage_rollback_target) and `restore_from_backup` publishes it as a NEW version:
the old prefix is never written over.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import describe_database
from chroma_migrate.pipeline import (
    RunPaths,
    batch_label,
    changed_exports,
    export_batch,
    load_batch,
    plan_run,
    target_counts,
    verify_run,
)
from chroma_migrate.publishing import LiveSide, choose_version_id, swap_pointers, upload_version
from chroma_migrate.run_types import Stage
from chroma_migrate.snapshots.backups import default_rollback_target
from chroma_migrate.snapshots.manifest import MANIFEST_NAME, read_manifest_file, write_manifest_file
from chroma_migrate.strategy import Strategy


@dataclass(frozen=True)
class RollbackChoice:
    current: str
    to_version_id: str
    written_since_migration: bool
    named: bool = False  # to_version_id was asked for, so a legacy (manifest-less) prefix is accepted


def choose_rollback(live: LiveSide, asked: str | None) -> RollbackChoice:
    """The live version and the one to return to (asked, else the one before the live one; kept on
    a rerun). The default is never a prefix without a manifest: that may be an upload that died
    halfway; a pre-manifest (legacy) snapshot can still be named explicitly. A version whose
    prefix is gone but which has a finished backup counts: the backup is the way back. Whether a
    named version has a usable copy at all is the staging step's check, which names the bad key."""
    store = live.snapshots
    resolved = live.ledger.outcome(live.collection, live.run_key, Stage.ROLLBACK_SOURCE, 0) or {}
    current = resolved.get("version_id") or store.read_pointer()
    to_version = resolved.get("to_version_id") or asked or default_rollback_target(
        current, store.list_versions(), store.version_exists, store.list_backups().values())
    if not to_version:
        others = [v for v in store.list_versions() if v != current]
        raise MigrationError(f"No version to roll back to: live is {current}, others are {others or 'none'}, and "
                             "no earlier version has a manifest or a finished backup.",
                             "Pass to_version_id naming an existing version.")
    manifest = store.read_manifest(live.layout.version_prefix(current)) or {}
    if not resolved:
        live.ledger.record_done(live.collection, live.run_key, Stage.ROLLBACK_SOURCE, 0,
                                {"version_id": current, "to_version_id": to_version})
    return RollbackChoice(current, to_version, "migrated_from" not in manifest and "rolled_back_from" not in manifest,
                          named=bool(asked))


def restore_from_backup(live: LiveSide, staged: Path, source: dict[str, Any], current: str) -> dict[str, Any]:
    """The verified backup's bytes (staged and checked by the resolve step; `source` is its
    `rollback` XCom: to_version_id, restored_from_backup) published as a new
    version and made live with swap_pointers (lock and live-pointer checks included).

    A new id rather than the old prefix again: a prefix is never written over (it may still hold
    damaged objects, or be mid-deletion by a lifecycle rule), and a fresh one is this run's alone.
    Its manifest says where the bytes came from (`restored_from_backup`, `restored_version_id`)
    and what was live before (`rolled_back_from`)."""
    version_id = choose_version_id(live)
    backup, restored = source["restored_from_backup"], source["to_version_id"]
    live.log(f"Restoring {restored} from the verified backup {live.snapshots.url(backup)} as new version {version_id}")
    original = read_manifest_file(staged) or {}
    carried = {"chromadb_version": original["chromadb_version"]} if "chromadb_version" in original else {}
    upload_version(live, staged, version_id, {"run_key": live.run_key, "rolled_back_from": current,
                                              "restored_from_backup": backup, "restored_version_id": restored,
                                              **carried})
    prefix = live.layout.version_prefix(version_id)
    manifest = live.snapshots.read_manifest(prefix)
    if manifest is None:
        raise MigrationError(f"{live.snapshots.url(prefix)} has no {MANIFEST_NAME} right after its upload.",
                             "Nothing live was changed; check the bucket's lifecycle rules and rerun the task.")
    local_copy = _linked_copy(staged, staged.with_name("rollback-restored"), manifest)
    outcome = swap_pointers(live, expected=current, version_id=version_id, local_copy=local_copy)
    return outcome | {"rebuilt": False, "restored_from_backup": backup, "restored_version_id": restored}


def _linked_copy(source: Path, destination: Path, manifest: dict[str, Any]) -> Path:
    """`source`'s files (hard links: no second copy of a large snapshot) under the new version's
    manifest, which is what the EFS copy is checked against and keeps."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(MANIFEST_NAME), copy_function=_link_or_copy)
    write_manifest_file(destination, manifest)
    return destination


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def rebuild_and_publish(live: LiveSide, paths: RunPaths, old_copy: Path, current: str,
                        batch_size: int) -> dict[str, Any]:
    """The live data (staged at `paths.source`) written in `old_copy`'s chromadb format through the
    migration's own steps (plan: the transplant, else export and load per batch; verify), each batch
    recorded in the ledger so a retried rollback resumes; then uploaded as a new version and made live."""
    old_format = describe_database(old_copy).written_by[-1]
    work = RunPaths(paths.root / "rollback-rebuild")
    _stage_copy(paths.source, work.source)
    plan = plan_run(work, old_format, Strategy.TRANSPLANT.value, batch_size)
    for batch in plan["batches"]:
        exported = _once(live, Stage.ROLLBACK_EXPORT, batch["index"], lambda b=batch: export_batch(work, plan, b),
                         redo_if=changed_exports)
        _once(live, Stage.ROLLBACK_LOAD, batch["index"], lambda b=batch, e=exported: load_batch(work, plan, b, e))
        live.log(f"Wrote {batch_label(batch)} in chromadb {old_format}'s format: {exported['count']} records")
    report = verify_run(work, plan)
    if not report["passed"]:
        raise MigrationError("Verification of the rebuilt data failed: " + "; ".join(report["problems"][:5]) + ".",
                             f"Nothing live was changed; the report is {work.report_md}.")
    version_id = choose_version_id(live)
    upload_version(live, work.target, version_id, {"run_key": live.run_key, "rolled_back_from": current,
                                                   "chromadb_version": old_format, "strategy": plan["strategy"]})
    outcome = swap_pointers(live, expected=current, version_id=version_id, local_copy=work.target)
    return outcome | {"rebuilt": True, "strategy": plan["strategy"], "chromadb_version": old_format,
                      "records": target_counts(report)}


def _stage_copy(source: Path, destination: Path) -> None:
    """The live data copied once for the rebuild (without its manifest: the new version gets its own)."""
    if destination.is_dir():
        return
    partial = destination.with_name(destination.name + ".copying")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    partial.rename(destination)


def _once(live: LiveSide, stage: Stage, index: int, step: Callable[[], Any],
          redo_if: Callable[[Any], list[str]] | None = None) -> Any:
    """A step's recorded outcome, or the step run and recorded (again when `redo_if` finds damage)."""
    done = live.ledger.outcome(live.collection, live.run_key, stage, index)
    if done is not None and not (redo_if and redo_if(done)):
        return done
    outcome = step()
    live.ledger.record_done(live.collection, live.run_key, stage, index, outcome)
    return outcome
