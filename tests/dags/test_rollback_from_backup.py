"""The rollback restores from the migration's verified backup when the old version's prefix is gone.

One migration run publishes (its `backup` task copies the seed version to the backup prefix);
then the seed's own prefix is deleted from S3, as a lifecycle rule would. With the backup
damaged too, the rollback's resolve step (called directly on the same live state: it runs
before the lock, so a DAG run would add only Airflow's start-up) refuses, naming the bad key;
with the backup repaired, the rollback DAG publishes its bytes as a new version and points S3
and EFS at it.
"""

from __future__ import annotations

import pytest

from chroma_migrate.errors import MigrationError
from chroma_migrate.publishing import LiveSide
from chroma_migrate.rollback import choose_rollback
from chroma_migrate.snapshot_source import stage_rollback_target
from chroma_migrate.snapshots.interfaces import MemoryLedger
from chroma_migrate.snapshots.manifest import MANIFEST_NAME, read_manifest_file
from tests.airflow_harness.harness import run_dag_test
from tests.conftest import dump_records
from tests.dags.conftest import SEED_VERSION, SnapshotSystem
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration


def _damage_one_object(system: SnapshotSystem, prefix: str) -> tuple[str, bytes]:
    """Flip one byte of one snapshot object under `prefix` (same size: only its sha256 tells); the
    key and its original bytes, to repair it afterwards."""
    client, bucket = system.moto.client("s3"), system.layout("words").bucket
    key = sorted(k for k in system.s3("words").list_objects(prefix) if not k.endswith(MANIFEST_NAME))[0]
    original = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
    return key, original


@pytest.mark.slow  # 70 s, CI's budget: the live test rolls back in every run
def test_rollback_restores_the_verified_backup_when_the_version_prefix_is_gone(system, tmp_path):
    seed_db = system.seed("words")
    migrated = run_dag_test(system.env, "chroma_migration__words", conf={"env": "dev"}, timeout_s=600)
    assert migrated.state == "success", migrated.summary()
    s3, layout = system.s3("words"), system.layout("words")
    migrated_version = s3.read_pointer()
    backup = migrated.xcom_return_values["backup"]["prefix"]
    assert s3.list_backups() == {backup: SEED_VERSION}
    assert s3.remove_objects(layout.version_prefix(SEED_VERSION)) > 0

    key, original = _damage_one_object(system, backup)
    live = LiveSide("words", "refusal-check", s3, system.efs("words"), MemoryLedger(), layout)
    choice = choose_rollback(live, None)
    assert choice.to_version_id == SEED_VERSION, "by default, the version before the live one, through its backup"
    with pytest.raises(MigrationError) as refused:
        stage_rollback_target(live, SEED_VERSION, tmp_path / "rollback-target", legacy_ok=False)
    assert refused.value.problem.startswith(
        f"Cannot roll back to {SEED_VERSION}: the version prefix {s3.url(layout.version_prefix(SEED_VERSION))} "
        f"is missing (no objects), and no verified backup of it exists under {s3.url(layout.backups_root())} ")
    assert f"mismatches its manifest at key {s3.url(key)}" in refused.value.problem
    assert s3.read_pointer() == migrated_version and system.efs("words").read_pointer() == migrated_version
    assert s3.list_versions() == [migrated_version], "nothing was uploaded"

    system.moto.client("s3").put_object(Bucket=layout.bucket, Key=key, Body=original)
    result = run_dag_test(system.env, "chroma_rollback__words", conf={"env": "dev"}, timeout_s=600)
    assert result.state == "success", result.summary()
    live = s3.read_pointer()
    assert live not in (SEED_VERSION, migrated_version), "the backup is published as a new version"
    assert system.efs("words").read_pointer() == live
    assert SEED_VERSION not in s3.list_versions(), "the old prefix is never written again"
    outcome = result.xcom_return_values["rollback"]
    assert outcome["restored_from_backup"] == backup and outcome["restored_version_id"] == SEED_VERSION
    assert outcome["version_id"] == live and outcome["previous_version_id"] == migrated_version
    assert f"verified backup {s3.url(backup)}" in result.log
    manifest = s3.read_manifest(layout.version_prefix(live))
    assert manifest["restored_from_backup"] == backup and manifest["rolled_back_from"] == migrated_version
    assert read_manifest_file(layout.efs_version_dir(live)) == manifest, "EFS keeps the published manifest"
    expected = dump_records("1.0.20", seed_db)
    assert_same_records(expected, dump_records("1.0.20", layout.efs_version_dir(live)), spaces_of(expected))
    assert system.lock_item("words") is None
