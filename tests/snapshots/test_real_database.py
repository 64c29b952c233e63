"""A real ChromaDB database goes S3 -> backup -> download -> EFS and still reads the same in its own version."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.snapshots import EfsSnapshotStore, S3SnapshotStore, SnapshotLayout, new_version_id
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import dump_records
from tests.snapshots.conftest import tree_bytes

pytestmark = pytest.mark.integration

SPEC = receipt_spec(records=100, big_dim=None)


def test_a_real_database_round_trips_byte_for_byte_and_opens(
        s3: Any, layout: SnapshotLayout, copy_of: Callable[..., Path], tmp_path: Path) -> None:
    database = copy_of("1.0.20", SPEC)
    store = S3SnapshotStore(s3, layout)
    version = new_version_id(datetime.now(UTC), store.version_in_use)
    manifest = store.upload(database, version, {"chromadb": "1.0.20"})
    assert "chroma.sqlite3" in manifest["files"]
    assert sum(1 for name in manifest["files"] if name.endswith("/data_level0.bin")) >= 3
    store.write_pointer(version)

    live = store.read_pointer()
    assert store.copy_version(live, layout.backup_prefix("run1", live)) == manifest
    assert store.download(live, tmp_path / "download") == manifest
    efs = EfsSnapshotStore(layout)
    target = efs.materialize(tmp_path / "download", live)
    efs.switch_pointer(live)

    served = tree_bytes(layout.efs_version_dir(efs.read_pointer()))
    served.pop("manifest.json")
    assert served == tree_bytes(database)
    assert dump_records("1.0.20", target) == dump_records("1.0.20", database)
