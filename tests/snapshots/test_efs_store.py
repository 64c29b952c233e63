"""The EFS working copy: versions appear whole, never get overwritten, and the pointer switches atomically."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from chroma_migrate.snapshots import (
    EfsSnapshotStore,
    InvalidVersionIdError,
    PointerChangedError,
    SnapshotLayout,
    VersionExistsError,
    VersionMissingError,
    build_manifest,
)
from chroma_migrate.snapshots.manifest import write_manifest_file
from tests.snapshots.conftest import tree_bytes, write_snapshot_dir

V1 = "20240101_120000"
V2 = "20240102_120000"


@pytest.fixture
def efs(tmp_path: Path) -> EfsSnapshotStore:
    return EfsSnapshotStore(SnapshotLayout(bucket="b", collection="receipts", efs_root=tmp_path / "efs"))


def downloaded(path: Path, version: str, seed: int = 0) -> Path:
    """A snapshot as S3SnapshotStore.download leaves it: the files plus their manifest.json."""
    write_snapshot_dir(path, seed=seed)
    write_manifest_file(path, build_manifest(path, version, {"chromadb": "1.0.20"}))
    return path


def test_materialize_copies_the_exact_bytes_and_leaves_no_temporaries(efs: EfsSnapshotStore, tmp_path: Path) -> None:
    source = downloaded(tmp_path / "src", V1)
    target = efs.materialize(source, V1)
    assert target == tmp_path / "efs" / "snapshots" / "receipts" / V1
    assert tree_bytes(target) == tree_bytes(source)
    assert [p.name for p in target.parent.iterdir()] == [V1]
    assert efs.list_versions() == [V1]


def test_materialize_is_idempotent_and_never_overwrites_a_different_version(
        efs: EfsSnapshotStore, tmp_path: Path) -> None:
    source = downloaded(tmp_path / "src", V1)
    target = efs.materialize(source, V1)
    before = tree_bytes(target)
    assert efs.materialize(source, V1) == target
    other = downloaded(tmp_path / "other", V1, seed=5)
    with pytest.raises(VersionExistsError) as caught:
        efs.materialize(other, V1)
    assert "never overwritten" in str(caught.value) and "chroma.sqlite3" in str(caught.value)
    assert tree_bytes(target) == before


def test_materialize_of_a_legacy_snapshot_writes_a_manifest_for_later_checks(
        efs: EfsSnapshotStore, tmp_path: Path) -> None:
    source = write_snapshot_dir(tmp_path / "legacy")
    target = efs.materialize(source, V1)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["files"] == build_manifest(source, V1)["files"]
    assert efs.materialize(source, V1) == target


def test_a_crashed_attempt_leaves_nothing_visible_and_is_cleaned_up(efs: EfsSnapshotStore, tmp_path: Path) -> None:
    collection = efs.layout.efs_collection_dir()
    stale = collection / f".tmp-{V1}-deadbeef"
    stale.mkdir(parents=True)
    (stale / "chroma.sqlite3").write_bytes(b"half")
    assert efs.list_versions() == []
    efs.materialize(downloaded(tmp_path / "src", V1), V1)
    assert sorted(p.name for p in collection.iterdir()) == [V1]


def test_switch_pointer_writes_the_version_id_and_refuses_a_missing_version(
        efs: EfsSnapshotStore, tmp_path: Path) -> None:
    assert efs.read_pointer() is None
    efs.materialize(downloaded(tmp_path / "src", V1), V1)
    efs.switch_pointer(V1)
    assert efs.layout.efs_pointer_path().read_bytes() == V1.encode()
    assert efs.read_pointer() == V1
    with pytest.raises(VersionMissingError) as caught:
        efs.switch_pointer(V2)
    assert V2 in str(caught.value) and "materialize" in str(caught.value)
    assert efs.read_pointer() == V1
    with pytest.raises(PointerChangedError):
        efs.switch_pointer(V1, expected=V2)
    assert sorted(p.name for p in efs.layout.efs_collection_dir().iterdir()) == [V1, "latest-pointer.txt"]


def test_a_garbage_pointer_file_is_refused_naming_the_file(efs: EfsSnapshotStore) -> None:
    path = efs.layout.efs_pointer_path()
    path.parent.mkdir(parents=True)
    path.write_text("../../other")
    with pytest.raises(InvalidVersionIdError) as caught:
        efs.read_pointer()
    assert str(path) in str(caught.value)


def test_readers_never_see_a_partial_or_missing_pointer_while_it_switches(
        efs: EfsSnapshotStore, tmp_path: Path) -> None:
    efs.materialize(downloaded(tmp_path / "a", V1), V1)
    efs.materialize(downloaded(tmp_path / "b", V2, seed=1), V2)
    efs.switch_pointer(V1)
    pointer = efs.layout.efs_pointer_path()
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(pointer.read_bytes())
            except FileNotFoundError:
                seen.add(b"<missing>")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(300):
            efs.switch_pointer(V2 if i % 2 == 0 else V1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert seen <= {V1.encode(), V2.encode()} and seen
    assert efs.read_pointer() == V1
    assert not [p for p in pointer.parent.iterdir() if p.name.startswith(".tmp-")]
