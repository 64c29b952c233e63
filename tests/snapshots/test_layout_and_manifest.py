"""Keys, paths and version ids match the compactor's layout; manifests catch every kind of damage."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from chroma_migrate.errors import MigrationError
from chroma_migrate.snapshots import (
    InvalidVersionIdError,
    ManifestError,
    SnapshotLayout,
    build_manifest,
    check_directory,
    new_version_id,
    validate_version_id,
)
from chroma_migrate.snapshots.manifest import write_manifest_file
from tests.snapshots.conftest import write_snapshot_dir


def test_layout_keys_and_paths_are_the_compactor_layout(tmp_path: Path) -> None:
    layout = SnapshotLayout(bucket="b", collection="receipts", efs_root=tmp_path)
    assert layout.version_prefix("20240131_235959") == "receipts/snapshot/timestamped/20240131_235959/"
    assert layout.versions_root() == "receipts/snapshot/timestamped/"
    assert layout.pointer_key() == "receipts/snapshot/latest-pointer.txt"
    assert layout.backup_prefix("manual__run1", "20240131_235959") == \
        "receipts/snapshot/backups/manual__run1/20240131_235959/"
    assert layout.efs_collection_dir() == tmp_path / "snapshots" / "receipts"
    assert layout.efs_version_dir("20240131_235959") == tmp_path / "snapshots" / "receipts" / "20240131_235959"
    assert layout.efs_pointer_path() == tmp_path / "snapshots" / "receipts" / "latest-pointer.txt"


@pytest.mark.parametrize("bad", ["", "latest", "../20240131_235959", "20240131_235959/x", "20240131-235959",
                                 "20240131_235959_1", "20241301_000000", "20240131_246000", " 20240131_235959"])
def test_version_ids_that_are_not_timestamps_are_refused_with_the_expected_form(bad: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidVersionIdError) as caught:
        validate_version_id(bad)
    assert "YYYYMMDD_HHMMSS" in str(caught.value) or "%Y%m%d_%H%M%S" in str(caught.value)
    layout = SnapshotLayout(bucket="b", collection="receipts", efs_root=tmp_path)
    with pytest.raises(InvalidVersionIdError):
        layout.efs_version_dir(bad)


@pytest.mark.parametrize("collection", ["", "a/b", "..", " receipts"])
def test_collection_names_that_would_escape_their_prefix_are_refused(collection: str, tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="collection name"):
        SnapshotLayout(bucket="b", collection=collection, efs_root=tmp_path)


def test_new_version_id_is_utc_and_never_reuses_a_taken_id() -> None:
    berlin = timezone(timedelta(hours=2))
    now = datetime(2024, 6, 1, 14, 30, 5, 999_000, tzinfo=berlin)
    assert new_version_id(now, lambda _: False) == "20240601_123005"
    taken = {"20240601_123005", "20240601_123006"}
    asked: list[str] = []

    def is_taken(version: str) -> bool:
        asked.append(version)
        return version in taken

    assert new_version_id(now, is_taken) == "20240601_123007"
    assert asked == ["20240601_123005", "20240601_123006", "20240601_123007"]
    rollover = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert new_version_id(rollover, lambda v: v == "20241231_235959") == "20250101_000000"


def test_new_version_id_refuses_a_naive_datetime() -> None:
    with pytest.raises(MigrationError, match="naive"):
        new_version_id(datetime(2024, 1, 1), lambda _: False)


def test_manifest_lists_every_file_with_its_real_hash_and_size_but_not_itself(tmp_path: Path) -> None:
    snapshot = write_snapshot_dir(tmp_path / "s", big=2 * 1024 * 1024)  # data_level0.bin spans several chunks
    write_manifest_file(snapshot, {"stale": True})  # a manifest already present is never listed
    manifest = build_manifest(snapshot, "20240101_000000", {"chromadb": "1.0.20", "source_version": "x"})
    expected = {p.relative_to(snapshot).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                                     "size": p.stat().st_size}
                for p in snapshot.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert manifest["files"] == expected
    assert manifest["format"] == 1 and manifest["version_id"] == "20240101_000000"
    assert manifest["chromadb"] == "1.0.20"
    assert "6f1b0c3e-0000-4000-8000-000000000001/data_level0.bin" in manifest["files"]
    json.dumps(manifest)  # plain JSON
    assert check_directory(snapshot, manifest) == []


def test_extra_fields_cannot_override_the_manifest_fields(tmp_path: Path) -> None:
    snapshot = write_snapshot_dir(tmp_path / "s")
    with pytest.raises(ManifestError, match="files"):
        build_manifest(snapshot, "20240101_000000", {"files": {}})


def test_check_directory_names_each_damaged_file(tmp_path: Path) -> None:
    snapshot = write_snapshot_dir(tmp_path / "s")
    manifest = build_manifest(snapshot, "20240101_000000")
    segment = snapshot / "6f1b0c3e-0000-4000-8000-000000000001"
    flipped = bytearray((segment / "header.bin").read_bytes())
    flipped[10] ^= 0xFF
    (segment / "header.bin").write_bytes(bytes(flipped))  # same size, different bytes
    (segment / "length.bin").write_bytes(b"short")
    (segment / "index_metadata.pickle").unlink()
    (snapshot / "chroma.sqlite3-wal").write_bytes(b"stray")
    problems = check_directory(snapshot, manifest)
    seg = "6f1b0c3e-0000-4000-8000-000000000001"
    assert problems == [
        f"missing file {seg}/index_metadata.pickle",
        "extra file chroma.sqlite3-wal (not in the manifest)",
        f"sha256 mismatch {seg}/header.bin: manifest says {manifest['files'][seg + '/header.bin']['sha256']}, "
        f"found {hashlib.sha256(bytes(flipped)).hexdigest()}",
        f"size mismatch {seg}/length.bin: manifest says 400 bytes, found 5",
    ]


def test_manifest_entries_that_escape_the_directory_are_refused(tmp_path: Path) -> None:
    snapshot = write_snapshot_dir(tmp_path / "s")
    manifest = build_manifest(snapshot, "20240101_000000")
    manifest["files"]["../outside"] = {"sha256": "0" * 64, "size": 1}
    with pytest.raises(ManifestError, match=r"\.\./outside"):
        check_directory(snapshot, manifest)
