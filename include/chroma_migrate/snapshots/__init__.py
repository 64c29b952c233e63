"""Snapshot stores (S3 master, EFS working copy), manifests, the compactor's lock and the batch ledger.

No Airflow here: everything takes boto3 clients, which the DAG's hooks create.
"""

from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.errors import (
    InvalidVersionIdError,
    LockHeldError,
    LockLostError,
    ManifestError,
    PointerChangedError,
    PointerMissingError,
    SnapshotError,
    SnapshotIntegrityError,
    VersionExistsError,
    VersionMissingError,
)
from chroma_migrate.snapshots.layout import SnapshotLayout, new_version_id, validate_version_id
from chroma_migrate.snapshots.ledger import BatchLedger
from chroma_migrate.snapshots.lock import DynamoLock, HeartbeatThread, lock_timestamp, new_owner_id
from chroma_migrate.snapshots.manifest import MANIFEST_NAME, build_manifest, check_directory
from chroma_migrate.snapshots.s3_store import S3SnapshotStore
from chroma_migrate.snapshots.tables import ensure_tables

__all__ = [
    "MANIFEST_NAME",
    "BatchLedger",
    "DynamoLock",
    "EfsSnapshotStore",
    "HeartbeatThread",
    "InvalidVersionIdError",
    "LockHeldError",
    "LockLostError",
    "ManifestError",
    "PointerChangedError",
    "PointerMissingError",
    "S3SnapshotStore",
    "SnapshotError",
    "SnapshotIntegrityError",
    "SnapshotLayout",
    "VersionExistsError",
    "VersionMissingError",
    "build_manifest",
    "check_directory",
    "ensure_tables",
    "lock_timestamp",
    "new_owner_id",
    "new_version_id",
    "validate_version_id",
]
