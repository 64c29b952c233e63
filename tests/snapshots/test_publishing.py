"""The live writes as engine steps (publishing.py), on a real moto S3 and local EFS folders, with
the in-memory ledger a local driver uses: no Airflow takes part."""

from __future__ import annotations

from pathlib import Path

import pytest

from chroma_migrate.publishing import LiveSide, publish
from chroma_migrate.snapshots import MANIFEST_NAME, EfsSnapshotStore, PointerChangedError, S3SnapshotStore
from chroma_migrate.snapshots.interfaces import MemoryLedger
from tests.snapshots.conftest import tree_bytes, write_snapshot_dir

pytestmark = pytest.mark.integration

LIVE = "20260101_000000"


@pytest.fixture
def live(store: S3SnapshotStore, layout, tmp_path: Path) -> LiveSide:
    seed = write_snapshot_dir(tmp_path / "seed", seed=1)
    store.upload(seed, LIVE, {"seeded_by": "test"})
    store.write_pointer(LIVE)
    efs = EfsSnapshotStore(layout)
    efs.materialize(seed, LIVE)
    efs.switch_pointer(LIVE)
    checks: list[str] = []
    return LiveSide("receipts", "run-1", store, efs, MemoryLedger(), layout, guard=lambda: checks.append("lock"))


def test_a_publish_uploads_once_and_swaps_both_pointers_even_when_retried(live: LiveSide, tmp_path: Path):
    new = write_snapshot_dir(tmp_path / "new", seed=2)
    first = publish(live, new, source_version_id=LIVE, manifest={"strategy": "upgrade"})
    again = publish(live, new, source_version_id=LIVE, manifest={"strategy": "upgrade"})  # a retried task
    assert first["version_id"] == again["version_id"] != LIVE
    assert live.snapshots.read_pointer() == live.working_copies.read_pointer() == first["version_id"]
    assert live.snapshots.list_versions() == [LIVE, first["version_id"]]
    readers_see = tree_bytes(Path(first["efs_path"]))
    assert {name: data for name, data in readers_see.items() if name != MANIFEST_NAME} == tree_bytes(new)


def test_a_pointer_moved_by_someone_else_is_never_swapped(live: LiveSide, tmp_path: Path):
    compactor = write_snapshot_dir(tmp_path / "compactor", seed=3)
    live.snapshots.upload(compactor, "20260102_000000", {"seeded_by": "compactor"})
    live.snapshots.write_pointer("20260102_000000", expected=LIVE)
    with pytest.raises(PointerChangedError, match="moved from"):
        publish(live, write_snapshot_dir(tmp_path / "new", seed=2), source_version_id=LIVE, manifest={})
    assert live.snapshots.read_pointer() == "20260102_000000" and live.working_copies.read_pointer() == LIVE
