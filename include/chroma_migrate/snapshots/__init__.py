"""Snapshot stores (S3 master, EFS working copy), manifests, the compactor's lock and the batch ledger.

No Airflow here: everything takes boto3 clients, which the DAG's hooks create.

The names below are loaded on first use (PEP 562): the DAG file imports `snapshots.layout`
through the configuration at parse time, and must not pay for botocore there.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "EfsSnapshotStore": "efs_store",
    "InvalidVersionIdError": "errors",
    "LockHeldError": "errors",
    "LockLostError": "errors",
    "ManifestError": "errors",
    "PointerChangedError": "errors",
    "PointerMissingError": "errors",
    "SnapshotError": "errors",
    "SnapshotIntegrityError": "errors",
    "VersionExistsError": "errors",
    "VersionMissingError": "errors",
    "SnapshotLayout": "layout",
    "new_version_id": "layout",
    "validate_version_id": "layout",
    "BatchLedger": "ledger",
    "DynamoLock": "lock",
    "HeartbeatThread": "lock",
    "lock_timestamp": "lock",
    "new_owner_id": "lock",
    "MANIFEST_NAME": "manifest",
    "build_manifest": "manifest",
    "check_directory": "manifest",
    "S3SnapshotStore": "s3_store",
    "ensure_tables": "tables",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
