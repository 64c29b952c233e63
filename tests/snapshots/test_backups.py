"""Choosing the copy a rollback returns to: the pure selection, and the S3 listing and keys it relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.snapshots import S3SnapshotStore, SnapshotIntegrityError, SnapshotLayout
from chroma_migrate.snapshots.backups import backups_of, default_rollback_target, first_verified, no_usable_copy
from tests.snapshots.conftest import write_snapshot_dir

V1, V2, V3 = "20260101_000000", "20260102_000000", "20260103_000000"


def test_default_target_is_the_newest_earlier_version_with_a_manifest_or_a_backup() -> None:
    complete = {V1}.__contains__
    assert default_rollback_target(V3, [V1, V2, V3], complete, []) == V1, "V2 has no manifest: maybe half-uploaded"
    assert default_rollback_target(V3, [V1, V3], complete, [V2]) == V2, "V2's prefix is gone, its backup is not"
    assert default_rollback_target(V2, [V2], complete, [V3]) is None, "never a version newer than the live one"


def test_first_verified_backup_wins_and_earlier_failures_are_kept() -> None:
    backups = {"b/run-a/" + V1 + "/": V1, "b/run-b/" + V1 + "/": V1, "b/run-c/" + V2 + "/": V2}
    order = backups_of(backups, V1)
    assert order == ["b/run-b/" + V1 + "/", "b/run-a/" + V1 + "/"]
    chosen, failures = first_verified(order, lambda prefix: "damaged" if "run-b" in prefix else None)
    assert chosen == "b/run-a/" + V1 + "/" and failures == {"b/run-b/" + V1 + "/": "damaged"}
    assert first_verified([], lambda prefix: None) == (None, {})


def test_refusal_names_the_version_prefix_and_every_backup() -> None:
    error = no_usable_copy(V1, "s3://b/x/ is missing (no objects)", "s3://b/backups/",
                           {"p/": "s3://b/p/ mismatches its manifest at key s3://b/p/chroma.sqlite3 (sha256 ...)"})
    assert error.problem.startswith(f"Cannot roll back to {V1}: the version prefix s3://b/x/ is missing (no objects), "
                                    "and no verified backup of it exists under s3://b/backups/ (")
    assert "at key s3://b/p/chroma.sqlite3" in error.problem and "Nothing live was changed" in error.fix
    assert "(none was found)" in no_usable_copy(V1, "x", "s3://b/backups/", {}).problem


def test_layout_reads_back_only_prefixes_its_backup_template_makes(layout: SnapshotLayout) -> None:
    prefix = layout.backup_prefix("manual__2026-01-01-abcd1234", V1)
    assert layout.parse_backup_prefix(prefix) == ("manual__2026-01-01-abcd1234", V1)
    assert prefix.startswith(layout.backups_root())
    for other in (layout.backups_root() + "a/b/" + V1 + "/", layout.backups_root() + "a/20261301_000000/",
                  layout.version_prefix(V1)):
        assert layout.parse_backup_prefix(other) is None


def test_finished_backups_are_listed_and_a_damaged_one_names_its_key(
        s3: Any, store: S3SnapshotStore, layout: SnapshotLayout, tmp_path: Path) -> None:
    store.upload(write_snapshot_dir(tmp_path / "v1"), V1)
    finished, unfinished = layout.backup_prefix("run-a", V1), layout.backup_prefix("run-b", V1)
    store.copy_version(V1, finished)
    s3.put_object(Bucket=layout.bucket, Key=unfinished + "chroma.sqlite3", Body=b"partial, no manifest")
    assert store.list_backups() == {finished: V1}
    key = finished + "chroma.sqlite3"
    body = bytearray(s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())
    body[0] ^= 0xFF
    s3.put_object(Bucket=layout.bucket, Key=key, Body=bytes(body))
    with pytest.raises(SnapshotIntegrityError) as damaged:
        store.download_prefix(finished, V1, tmp_path / "staged")
    assert damaged.value.keys == [key]
