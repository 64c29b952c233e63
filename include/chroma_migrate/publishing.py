"""The live writes of a run: upload the new version, then swap the pointers; or point back.

Written against the store interfaces (snapshots/interfaces.py), so the DAG's S3/EFS/DynamoDB
and a test's local stand-ins run the same steps. `guard` checks the lock (owner and fence)
right before each live write; the S3 pointer is only replaced if it still names the version
the run started from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chroma_migrate.faults import fault_point
from chroma_migrate.run_types import Stage
from chroma_migrate.snapshots.errors import PointerChangedError, SnapshotError
from chroma_migrate.snapshots.interfaces import Ledger, SnapshotStore, WorkingCopyStore
from chroma_migrate.snapshots.layout import SnapshotLayout, new_version_id

logger = logging.getLogger(__name__)


def _no_guard() -> None:
    """Where no lock is taken (a local run): nothing to check."""


@dataclass
class LiveSide:
    """One collection's live stores and ledger, as one run's steps see them."""

    collection: str
    run_key: str
    snapshots: SnapshotStore
    working_copies: WorkingCopyStore
    ledger: Ledger
    layout: SnapshotLayout
    guard: Callable[[], None] = _no_guard
    log: Callable[[str], None] = field(default=logger.info)

    def report_prefix(self) -> str:
        """Where this run's verification reports go, beside the collection's snapshots."""
        return self.layout.pointer_key().rsplit("/", 1)[0] + f"/migrations/{self.run_key}/"


def choose_version_id(live: LiveSide) -> str:
    """Chosen once per run and recorded, so a retry uploads to the same new prefix."""
    chosen = live.ledger.outcome(live.collection, live.run_key, Stage.PUBLISH_VERSION, 0)
    if chosen:
        return chosen["version_id"]
    version_id = new_version_id(datetime.now(UTC), live.snapshots.version_in_use)
    live.ledger.record_done(live.collection, live.run_key, Stage.PUBLISH_VERSION, 0, {"version_id": version_id})
    return version_id


def upload_version(live: LiveSide, source: Path, version_id: str, extra: dict[str, Any],
                   previous: str | None = None) -> dict[str, Any] | None:
    """Upload once: a complete upload by this run is kept, a partial one of ours is redone.

    With `previous` (the version the new one came from), files byte-identical to that version's
    are copied inside S3 rather than sent again. Returns what moved how (TransferReport), or
    None when an earlier attempt of this run had already completed the upload.
    """
    store = live.snapshots
    prefix = live.layout.version_prefix(version_id)
    if store.version_exists(version_id):
        manifest = store.read_manifest(prefix) or {}
        if manifest.get("run_key") != live.run_key:
            raise SnapshotError(f"{store.url(prefix)} was completed by another run ({manifest.get('run_key')}).",
                                "Clear this run's publish-version ledger entry to pick a new id.")
        live.log(f"Version {version_id} was already uploaded by this run")
        return None
    if store.version_in_use(version_id):
        # Our own earlier attempt died mid-upload (the id is recorded for this run only): start over.
        live.log(f"Removed {store.remove_objects(prefix)} objects of an interrupted upload of {version_id}")
    live.guard()
    upload_changed = getattr(store, "upload_changed", None)
    if upload_changed is None:  # a store without server-side copies uploads everything
        store.upload(source, version_id, extra)
        live.log(f"Uploaded {source} as {store.url(prefix)}")
        return None
    _, report = upload_changed(source, version_id, extra, previous=previous)
    live.log(f"Uploaded {source} as {store.url(prefix)}: {report.describe()}")
    return report.to_dict()


def swap_pointers(live: LiveSide, *, expected: str, version_id: str, local_copy: Path,
                  allow_legacy: bool = False) -> dict[str, Any]:
    """Make `version_id` live: the working copy first (not yet visible), then the S3 pointer (the
    master copy), then the working-copy pointer.

    Both pointers must still name `expected` (or already `version_id`, on a rerun that died
    between the two writes). `allow_legacy` is for a rollback to a snapshot without a manifest.
    """
    store, efs = live.snapshots, live.working_copies
    current, efs_current = store.read_pointer(), efs.read_pointer()
    _check_pointers(live, expected, version_id, current, efs_current)
    efs_report = None
    materialize_changed = getattr(efs, "materialize_changed", None)
    if materialize_changed is None:
        efs.materialize(local_copy, version_id)
    else:  # unchanged files come from the live working copy on the same file system (copied, never linked)
        _, efs_report = materialize_changed(local_copy, version_id, previous=efs_current)
        live.log(f"EFS copy {live.layout.efs_version_dir(version_id)}: {efs_report.describe()}")
    if current != version_id:
        store.write_pointer(version_id, expected=expected, allow_legacy=allow_legacy, guard=live.guard)
        live.log(f"S3 pointer {store.url(live.layout.pointer_key())}: {expected} -> {version_id}")
    fault_point("between_pointers")
    if efs_current != version_id:
        live.guard()
        efs.switch_pointer(version_id, expected=efs_current)
        live.log(f"EFS pointer {live.layout.efs_pointer_path()}: {efs_current} -> {version_id}")
    return {"version_id": version_id, "previous_version_id": expected, "s3_pointer": version_id,
            "efs_pointer": version_id, "efs_path": str(live.layout.efs_version_dir(version_id)),
            **({"efs_transfer": efs_report.to_dict()} if efs_report else {})}


def _check_pointers(live: LiveSide, expected: str, version_id: str, current: str, efs_current: str | None) -> None:
    if current not in (expected, version_id):
        raise PointerChangedError(
            f"The live pointer of {live.collection!r} moved from {expected} to {current} during this run.",
            "Nothing was swapped. Rerun the migration from the new live version.",
        )
    if efs_current not in (expected, version_id):
        raise PointerChangedError(
            f"The EFS pointer {live.layout.efs_pointer_path()} names {efs_current}, not {expected} (the S3 "
            f"pointer this run started from).",
            "Nothing was swapped. Bring EFS in line with S3 (the compactor's sync) and rerun.",
        )


def publish(live: LiveSide, target: Path, *, source_version_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Upload the verified database as a new version and make it live in both stores."""
    version_id = choose_version_id(live)
    transfer = upload_version(live, target, version_id, {"run_key": live.run_key, "migrated_from": source_version_id,
                                                         **manifest}, previous=source_version_id)
    swapped = swap_pointers(live, expected=source_version_id, version_id=version_id, local_copy=target)
    return {**swapped, **({"s3_transfer": transfer} if transfer else {})}


def publish_reports(live: LiveSide, files: list[Path]) -> list[str]:
    """The run's reports beside its snapshots; their urls."""
    prefix = live.report_prefix()
    return [live.snapshots.put_file(path, prefix + path.name) for path in files]
