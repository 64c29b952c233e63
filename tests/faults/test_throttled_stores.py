"""Scenario 2, below Airflow: the snapshot store and the lock through a proxy that throttles and loses answers.

The clients retry the way the DAG's hook configures them (standard mode). Every operation's
first request is refused (SlowDown / ThrottlingException), and the first conditional write of
each kind lands in moto but its answer is replaced by a 500, so the retry meets its own write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chroma_migrate.snapshots import DynamoLock, S3SnapshotStore, SnapshotLayout, ensure_tables, new_owner_id
from chroma_migrate_testkit.standins import REGION
from tests.conftest import tree_digest
from tests.faults.fault_proxy import FaultProxy, FaultRules
from tests.snapshots.conftest import write_snapshot_dir

pytestmark = pytest.mark.integration

V1, V2 = "20250101_000000", "20250102_000000"


def client(service: str, endpoint: str, attempts: int = 8) -> Any:
    """Retries as the DAG's hook sets them up (chroma_migration.hooks.DEFAULT_RETRIES)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}))


def test_store_and_lock_survive_throttling_and_lost_answers(moto_endpoint: str, tmp_path: Path) -> None:
    direct = client("s3", moto_endpoint)
    layout = SnapshotLayout("throttled", "words", tmp_path / "efs")
    direct.create_bucket(Bucket=layout.bucket)
    ensure_tables(client("dynamodb", moto_endpoint), "locks-throttled")
    source = write_snapshot_dir(tmp_path / "snapshot", seed=3)
    S3SnapshotStore(direct, layout).upload(source, V1)
    S3SnapshotStore(direct, layout).write_pointer(V1)

    rules = FaultRules()
    with FaultProxy(moto_endpoint, rules) as proxy:
        store = S3SnapshotStore(client("s3", proxy.endpoint), layout)
        lock = DynamoLock(client("dynamodb", proxy.endpoint), "locks-throttled", "words", new_owner_id())
        lock.acquire()  # conditional PutItem: lands, answer lost, the retry re-enters our own item
        lock.assert_held()
        manifest = store.upload(source, V2, {"run_key": "r1"})  # manifest PUT If-None-Match: answer lost
        store.write_pointer(V2, expected=V1, guard=lock.assert_held)  # pointer PUT If-Match: answer lost
        downloaded = store.download(V2, tmp_path / "back")
        lock.release()  # conditional DeleteItem: answer lost, the retry finds nothing (and says False)
        assert lock.read() is None
    assert downloaded == manifest
    assert tree_digest(tmp_path / "back") == {**tree_digest(source), "manifest.json": tree_digest(tmp_path / "back")[
        "manifest.json"]}
    assert S3SnapshotStore(direct, layout).read_pointer() == V2
    lost = [entry for entry in rules.log if entry.startswith("after")]
    assert {entry.split()[1] for entry in lost} == {"dynamodb:PutItem/condition", "s3:PutObject/if-none-match",
                                                    "s3:PutObject/if-match", "dynamodb:DeleteItem/condition"}, lost
    throttled = {entry.split()[1] for entry in rules.log if entry.startswith("before")}
    assert {"s3:PutObject", "s3:GetObject", "s3:HeadObject", "s3:ListObjects", "dynamodb:GetItem"} <= throttled


def test_a_store_that_stays_down_fails_clearly_and_moves_no_pointer(moto_endpoint: str, tmp_path: Path) -> None:
    direct = client("s3", moto_endpoint)
    layout = SnapshotLayout("throttled-down", "words", tmp_path / "efs")
    direct.create_bucket(Bucket=layout.bucket)
    source = write_snapshot_dir(tmp_path / "snapshot", seed=4)
    for version in (V1, V2):
        S3SnapshotStore(direct, layout).upload(source, version)
    S3SnapshotStore(direct, layout).write_pointer(V1)
    pointer_key = layout.pointer_key()
    rules = FaultRules(fail_first_per_operation=0, lose_first_conditional_answer=False,
                       always_fail=lambda r: r.method == "PUT" and r.key == pointer_key)
    with FaultProxy(moto_endpoint, rules) as proxy:
        store = S3SnapshotStore(client("s3", proxy.endpoint, attempts=3), layout)
        with pytest.raises(ClientError, match=r"SlowDown.*PutObject.*reached max retries"):
            store.write_pointer(V2, expected=V1)
    assert len(rules.log) == 3, rules.log  # three attempts, with backoff, then the error
    assert S3SnapshotStore(direct, layout).read_pointer() == V1
