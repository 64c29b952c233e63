"""S3 snapshots against a real moto server: bytes, manifests, pointers, refusals, backups."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.snapshots import (
    InvalidVersionIdError,
    PointerChangedError,
    PointerMissingError,
    S3SnapshotStore,
    SnapshotError,
    SnapshotIntegrityError,
    SnapshotLayout,
    VersionExistsError,
    VersionMissingError,
    build_manifest,
    new_version_id,
)
from tests.snapshots.conftest import RecordingClient, tree_bytes, write_snapshot_dir

pytestmark = pytest.mark.integration

V1 = "20240101_120000"
V2 = "20240102_120000"
V3 = "20240103_120000"
SEG = "6f1b0c3e-0000-4000-8000-000000000001"


def object_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_upload_then_download_gives_back_the_same_bytes_and_manifest(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    manifest = store.upload(snapshot_dir, V1, {"chromadb": "1.0.20"})
    assert manifest == build_manifest(snapshot_dir, V1, {"chromadb": "1.0.20"})
    prefix = store.layout.version_prefix(V1)
    stored = json.loads(object_bytes(s3, store.bucket, prefix + "manifest.json"))
    assert stored == manifest
    assert object_bytes(s3, store.bucket, prefix + f"{SEG}/data_level0.bin") == \
        (snapshot_dir / SEG / "data_level0.bin").read_bytes()

    downloaded = store.download(V1, tmp_path / "down")
    assert downloaded == manifest
    got = tree_bytes(tmp_path / "down")
    assert json.loads(got.pop("manifest.json")) == manifest
    assert got == tree_bytes(snapshot_dir)
    assert store.version_exists(V1) and store.read_manifest(prefix) == manifest


def test_manifest_is_uploaded_last(s3: Any, layout: SnapshotLayout, snapshot_dir: Path) -> None:
    recording = RecordingClient(s3)
    S3SnapshotStore(recording, layout).upload(snapshot_dir, V1)
    keys = [key for _, key in recording.calls]
    assert keys[-1] == layout.version_prefix(V1) + "manifest.json"
    assert len(keys) == 7 and keys.count(keys[-1]) == 1


def test_files_larger_than_the_multipart_threshold_round_trip_and_back_up(
        store: S3SnapshotStore, tmp_path: Path) -> None:
    source = write_snapshot_dir(tmp_path / "big", big=9 * 1024 * 1024)  # > 8 MiB: managed multipart transfers
    manifest = store.upload(source, V1)
    store.download(V1, tmp_path / "down")
    assert (tmp_path / "down" / SEG / "data_level0.bin").read_bytes() == (source / SEG / "data_level0.bin").read_bytes()
    backup = store.layout.backup_prefix("run1", V1)
    assert store.copy_version(V1, backup) == manifest


def test_a_tampered_object_is_detected_by_download_naming_the_file(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    store.upload(snapshot_dir, V1)
    key = store.layout.version_prefix(V1) + f"{SEG}/header.bin"
    original = object_bytes(s3, store.bucket, key)
    s3.put_object(Bucket=store.bucket, Key=key, Body=bytes([original[0] ^ 1]) + original[1:])
    with pytest.raises(SnapshotIntegrityError) as caught:
        store.download(V1, tmp_path / "down")
    assert caught.value.problems == [f"sha256 mismatch {SEG}/header.bin: manifest says "
                                     f"{build_manifest(snapshot_dir, V1)['files'][f'{SEG}/header.bin']['sha256']}, "
                                     f"found {caught.value.problems[0].rsplit(' ', 1)[1]}"]
    assert f"{SEG}/header.bin" in str(caught.value) and store.bucket in str(caught.value)


def test_an_extra_or_missing_object_is_detected_by_download(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    store.upload(snapshot_dir, V1)
    prefix = store.layout.version_prefix(V1)
    s3.delete_object(Bucket=store.bucket, Key=prefix + f"{SEG}/length.bin")
    s3.put_object(Bucket=store.bucket, Key=prefix + "chroma.sqlite3-journal", Body=b"x")
    with pytest.raises(SnapshotIntegrityError) as caught:
        store.download(V1, tmp_path / "down")
    assert caught.value.problems == [f"missing file {SEG}/length.bin",
                                     "extra file chroma.sqlite3-journal (not in the manifest)"]


def test_legacy_snapshot_without_manifest_downloads_and_returns_none(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    prefix = store.layout.version_prefix(V1)
    for name, data in tree_bytes(snapshot_dir).items():
        s3.put_object(Bucket=store.bucket, Key=prefix + name, Body=data)
    assert store.download(V1, tmp_path / "down") is None
    assert tree_bytes(tmp_path / "down") == tree_bytes(snapshot_dir)
    assert not store.version_exists(V1)  # complete only with a manifest
    assert store.list_versions() == [V1]


def test_download_refuses_a_non_empty_destination_and_a_missing_version(
        store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    store.upload(snapshot_dir, V1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "old.bin").write_bytes(b"old")
    with pytest.raises(SnapshotError, match="not an empty directory"):
        store.download(V1, busy)
    with pytest.raises(VersionMissingError, match=V2):
        store.download(V2, tmp_path / "other")


def test_upload_refuses_a_prefix_that_already_has_any_object(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    store.upload(snapshot_dir, V1)
    other = write_snapshot_dir(tmp_path / "other", seed=7)
    with pytest.raises(VersionExistsError, match="never written over"):
        store.upload(other, V1)
    assert store.download(V1, tmp_path / "down") == build_manifest(snapshot_dir, V1)  # untouched

    s3.put_object(Bucket=store.bucket, Key=store.layout.version_prefix(V2) + "stray", Body=b"")
    with pytest.raises(VersionExistsError):
        store.upload(other, V2)


def test_an_interrupted_upload_is_incomplete_and_its_id_is_never_reused(
        s3: Any, layout: SnapshotLayout, snapshot_dir: Path) -> None:
    failing = S3SnapshotStore(RecordingClient(s3, fail_on=("upload_file", 3)), layout)
    with pytest.raises(ConnectionError):
        failing.upload(snapshot_dir, "20240601_123005")
    store = S3SnapshotStore(s3, layout)
    assert not store.version_exists("20240601_123005")
    assert store.version_in_use("20240601_123005")
    with pytest.raises(VersionMissingError, match=r"manifest\.json"):
        store.write_pointer("20240601_123005")
    version = new_version_id(datetime(2024, 6, 1, 12, 30, 5, tzinfo=UTC), store.version_in_use)
    assert version == "20240601_123006"
    store.upload(snapshot_dir, version)
    assert store.list_versions() == ["20240601_123005", "20240601_123006"]


def test_pointer_body_is_the_version_id_only_and_reads_back(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path) -> None:
    with pytest.raises(PointerMissingError) as caught:
        store.read_pointer()
    assert f"s3://{store.bucket}/receipts/snapshot/latest-pointer.txt" in str(caught.value)
    store.upload(snapshot_dir, V1)
    store.write_pointer(V1)
    assert object_bytes(s3, store.bucket, "receipts/snapshot/latest-pointer.txt") == V1.encode()
    assert store.read_pointer() == V1


def test_pointer_written_by_another_tool_with_a_newline_is_read_and_garbage_is_refused(
        s3: Any, store: S3SnapshotStore) -> None:
    key = store.layout.pointer_key()
    s3.put_object(Bucket=store.bucket, Key=key, Body=f"{V1}\n".encode())
    assert store.read_pointer() == V1
    s3.put_object(Bucket=store.bucket, Key=key, Body=b"../../etc/passwd")
    with pytest.raises(InvalidVersionIdError) as caught:
        store.read_pointer()
    assert key in str(caught.value) and "../../etc/passwd" in str(caught.value)


def test_pointer_swap_refuses_when_someone_else_published_in_between(
        store: S3SnapshotStore, snapshot_dir: Path) -> None:
    store.upload(snapshot_dir, V1)
    store.upload(snapshot_dir, V2)
    store.write_pointer(V2)
    with pytest.raises(PointerChangedError, match=f"names {V2}, not {V1}"):
        store.write_pointer(V1, expected=V1)
    assert store.read_pointer() == V2
    store.write_pointer(V1, expected=V2)
    assert store.read_pointer() == V1


def test_pointer_write_is_conditional_on_what_the_check_read(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path) -> None:
    """A writer landing between the check and the PUT (here: inside the guard) is never overwritten."""
    for version in (V1, V2, V3):
        store.upload(snapshot_dir, version)
    store.write_pointer(V1)
    key = store.layout.pointer_key()

    def compactor_publishes() -> None:
        s3.put_object(Bucket=store.bucket, Key=key, Body=V3.encode())

    with pytest.raises(PointerChangedError, match=f"names {V3}, not {V1}.*between this run's check and its write"):
        store.write_pointer(V2, expected=V1, guard=compactor_publishes)
    assert store.read_pointer() == V3

    def lock_lost() -> None:
        raise RuntimeError("lock lost")

    with pytest.raises(RuntimeError, match="lock lost"):
        store.write_pointer(V2, expected=V3, guard=lock_lost)
    assert store.read_pointer() == V3

    def our_put_already_landed() -> None:  # a 5xx after the write: the client's retry meets its own object
        s3.put_object(Bucket=store.bucket, Key=key, Body=V2.encode())

    store.write_pointer(V2, expected=V3, guard=our_put_already_landed)
    assert store.read_pointer() == V2


def test_pointer_to_a_legacy_version_needs_allow_legacy(s3: Any, store: S3SnapshotStore) -> None:
    s3.put_object(Bucket=store.bucket, Key=store.layout.version_prefix(V1) + "chroma.sqlite3", Body=b"db")
    with pytest.raises(VersionMissingError):
        store.write_pointer(V1)
    store.write_pointer(V1, allow_legacy=True)
    assert store.read_pointer() == V1
    with pytest.raises(VersionMissingError, match="no objects"):
        store.write_pointer(V2, allow_legacy=True)


def test_list_versions_is_sorted_paginated_and_ignores_other_prefixes(s3: Any, layout: SnapshotLayout) -> None:
    store = S3SnapshotStore(s3, layout, page_size=2)
    ids = ["20240105_000000", "20240101_000000", "20240103_000000", "20231231_235959", "20240102_000000"]
    for version in ids:
        s3.put_object(Bucket=layout.bucket, Key=layout.version_prefix(version) + "chroma.sqlite3", Body=b"x")
    s3.put_object(Bucket=layout.bucket, Key="receipts/snapshot/timestamped/tmp/x", Body=b"x")
    s3.put_object(Bucket=layout.bucket, Key="other/snapshot/timestamped/20240109_000000/x", Body=b"x")
    assert store.list_versions() == sorted(ids)


def test_download_and_upload_page_through_many_objects(s3: Any, layout: SnapshotLayout, tmp_path: Path) -> None:
    source = tmp_path / "many"
    source.mkdir()
    for i in range(7):
        (source / f"part-{i}.bin").write_bytes(bytes([i]) * (i + 1))
    store = S3SnapshotStore(s3, layout, page_size=2)
    store.upload(source, V1)
    store.download(V1, tmp_path / "down")
    got = tree_bytes(tmp_path / "down")
    got.pop("manifest.json")
    assert got == tree_bytes(source)


def test_backup_copy_is_byte_identical_and_verified(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    manifest = store.upload(snapshot_dir, V1)
    backup = store.layout.backup_prefix("scheduled__2024-01-01T00:00:00+00:00", V1)
    assert store.copy_version(V1, backup) == manifest
    source_keys = store.list_objects(store.layout.version_prefix(V1))
    backup_keys = store.list_objects(backup)
    assert len(backup_keys) == len(source_keys) == 7
    for key in source_keys:
        relative = key[len(store.layout.version_prefix(V1)):]
        assert object_bytes(s3, store.bucket, backup + relative) == object_bytes(s3, store.bucket, key)
    assert store.read_manifest(backup) == manifest


def test_backup_rerun_after_a_partial_copy_converges(
        s3: Any, layout: SnapshotLayout, snapshot_dir: Path) -> None:
    store = S3SnapshotStore(s3, layout)
    manifest = store.upload(snapshot_dir, V1)
    backup = layout.backup_prefix("run1", V1)
    interrupted = S3SnapshotStore(RecordingClient(s3, fail_on=("copy", 3)), layout)
    with pytest.raises(ConnectionError):
        interrupted.copy_version(V1, backup)
    assert len(store.list_objects(backup)) == 2 and store.read_manifest(backup) is None
    # A same-size object with wrong bytes (e.g. written by a broken earlier attempt) is repaired too.
    first = sorted(store.list_objects(backup))[0]
    wrong = bytes(len(object_bytes(s3, layout.bucket, first)))
    s3.put_object(Bucket=layout.bucket, Key=first, Body=wrong)

    rerun = RecordingClient(s3)
    assert S3SnapshotStore(rerun, layout).copy_version(V1, backup) == manifest
    copied = [key for name, key in rerun.calls if name == "copy"]
    assert first in copied and len(copied) == 1 + 4 + 1  # the repaired one, the 4 never copied, the manifest
    assert store.copy_version(V1, backup) == manifest  # and again: nothing changes
    for name, entry in manifest["files"].items():
        assert len(object_bytes(s3, layout.bucket, backup + name)) == entry["size"]
    assert object_bytes(s3, layout.bucket, first) != wrong


def test_backup_of_a_legacy_snapshot_builds_a_manifest_from_the_bytes(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path, tmp_path: Path) -> None:
    prefix = store.layout.version_prefix(V1)
    for name, data in tree_bytes(snapshot_dir).items():
        s3.put_object(Bucket=store.bucket, Key=prefix + name, Body=data)
    backup = store.layout.backup_prefix("run1", V1)
    manifest = store.copy_version(V1, backup)
    assert manifest["files"] == build_manifest(snapshot_dir, V1)["files"]
    assert manifest["legacy_source"] is True and store.read_manifest(backup) == manifest
    # The backup is a normal, verifiable snapshot now.
    restore_layout = SnapshotLayout(bucket=store.bucket, collection="receipts", efs_root=tmp_path,
                                    prefix_template="{collection}/snapshot/backups/run1/{version_id}/")
    assert S3SnapshotStore(s3, restore_layout).download(V1, tmp_path / "restored") == manifest


def test_backup_refuses_a_damaged_source_naming_the_file(
        s3: Any, store: S3SnapshotStore, snapshot_dir: Path) -> None:
    store.upload(snapshot_dir, V1)
    key = store.layout.version_prefix(V1) + "chroma.sqlite3"
    data = object_bytes(s3, store.bucket, key)
    s3.put_object(Bucket=store.bucket, Key=key, Body=data[::-1])
    with pytest.raises(SnapshotIntegrityError) as caught:
        store.copy_version(V1, store.layout.backup_prefix("run1", V1))
    assert caught.value.problems[0].startswith("sha256 mismatch chroma.sqlite3")
    assert store.read_manifest(store.layout.backup_prefix("run1", V1)) is None


def test_backup_refuses_a_prefix_holding_foreign_objects(s3: Any, store: S3SnapshotStore, snapshot_dir: Path) -> None:
    store.upload(snapshot_dir, V1)
    backup = store.layout.backup_prefix("run1", V1)
    s3.put_object(Bucket=store.bucket, Key=backup + "unrelated.txt", Body=b"x")
    with pytest.raises(VersionExistsError, match=r"unrelated\.txt"):
        store.copy_version(V1, backup)
    with pytest.raises(SnapshotError, match="overlaps"):
        store.copy_version(V1, store.layout.version_prefix(V1) + "backup/")
