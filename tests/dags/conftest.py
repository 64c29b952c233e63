"""A real Airflow 3.3 (SQLite metadata, `airflow dags test`) wired to a real moto server.

Each test starts from a clean snapshot system: empty buckets and tables, fresh EFS and
staging folders, and live snapshots seeded with databases written by the real chromadb.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.s3_store import S3SnapshotStore
from chroma_migrate.snapshots.tables import ensure_tables
from chroma_migrate_testkit.fixtures import cached_database, receipt_spec
from chroma_migrate_testkit.standins import MotoServer, copy_database, seed_snapshot
from tests.airflow_harness.harness import airflow_home
from tests.conftest import FIXTURE_CACHE, REPO

SEED_VERSION = "20260101_000000"
SMALL_SPEC = receipt_spec(records=300, dim=16, big_dim=None)
ENVIRONMENTS = ("dev", "prod", "gated")
# The `gated` environment declares two readers that cannot read a 1.5.9 snapshot (tests/dags/test_readers.py).
GATED_READERS = {"legacy_search": "0.6.3", "receipt_api": "1.0.20"}
GATED_QUERIES = {"words": {"words": [{"name": "emoji", "where_document": {"$contains": "😀"}},
                                     {"name": "first_word", "n_results": 5, "near_ids": [
                                         "IMAGE#00000000-0000-0000-0000-000000000007#RECEIPT#00000#LINE#00000#WORD#00000#000000"]}]}}


def config_text(root: Path) -> str:
    """The shipped layout with test tables, a short lock wait and local folders for EFS."""
    environments = {
        name: {
            "bucket": f"chroma-test-{name}", "efs_root": str(root / f"efs-{name}"),
            "staging_root": str(root / f"staging-{name}"), "lock_table": f"locks-{name}",
            "ledger_table": f"ledger-{name}", "require_approval": name == "prod",
            "schedule": "@daily" if name == "dev" else None,
            **({"readers": GATED_READERS, "sample_queries": GATED_QUERIES} if name == "gated" else {}),
        }
        for name in ENVIRONMENTS
    }
    return json.dumps({
        "defaults": {"aws_conn_id": "aws_default", "target_version": "1.5.9", "batch_size": 5000,
                     "lock_lease_minutes": 10, "lock_wait_minutes": 0.1},
        "collections": ["words", "lines"],
        "environments": environments,
    }, indent=2)


@dataclass
class SnapshotSystem:
    """The live state a test arranges and then asserts on."""

    moto: MotoServer
    root: Path
    env: dict[str, str]

    def layout(self, collection: str, env: str = "dev") -> SnapshotLayout:
        return SnapshotLayout(f"chroma-test-{env}", collection, self.root / f"efs-{env}")

    def s3(self, collection: str, env: str = "dev") -> S3SnapshotStore:
        return S3SnapshotStore(self.moto.client("s3"), self.layout(collection, env))

    def efs(self, collection: str, env: str = "dev") -> EfsSnapshotStore:
        return EfsSnapshotStore(self.layout(collection, env))

    def seed(self, collection: str, version: str = "1.0.20", env: str = "dev", version_id: str = SEED_VERSION,
             spec: dict[str, Any] | None = None) -> Path:
        """Publish a database written by chromadb `version` as the live snapshot; returns its local copy."""
        cached = cached_database(FIXTURE_CACHE, version, spec or SMALL_SPEC)
        local = copy_database(cached, self.root / "seeds" / f"{env}-{collection}-{version_id}")
        seed_snapshot(self.moto.client("s3"), self.layout(collection, env), local, version_id)
        return local

    def lock_item(self, collection: str, env: str = "dev") -> dict | None:
        key = {"PK": {"S": f"LOCK#{collection}#chroma-{collection}-update"}, "SK": {"S": "LOCK"}}
        item = self.moto.client("dynamodb").get_item(TableName=f"locks-{env}", Key=key, ConsistentRead=True)
        return item.get("Item")

    def ledger_items(self, env: str = "dev") -> list[dict]:
        return self.moto.client("dynamodb").scan(TableName=f"ledger-{env}")["Items"]


def _reset(moto: MotoServer, root: Path) -> None:
    s3, dynamodb = moto.client("s3"), moto.client("dynamodb")
    for env in ENVIRONMENTS:
        bucket = f"chroma-test-{env}"
        try:
            objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            while objects:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in objects]})
                objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        except s3.exceptions.NoSuchBucket:
            s3.create_bucket(Bucket=bucket)
        for table in (f"locks-{env}", f"ledger-{env}"):
            with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
                dynamodb.delete_table(TableName=table)
        ensure_tables(dynamodb, f"locks-{env}", f"ledger-{env}")
        for folder in (f"efs-{env}", f"staging-{env}", "seeds"):
            shutil.rmtree(root / folder, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_session(moto_server: MotoServer, tmp_path_factory) -> tuple[dict[str, str], Path]:
    root = tmp_path_factory.mktemp("snapshot-system")
    config = root / "chroma_migration.yaml"
    config.write_text(config_text(root))  # JSON is YAML
    env = airflow_home(
        tmp_path_factory, dags_folder=REPO / "dags", plugins_folder=REPO / "plugins",
        extra_env={**moto_server.airflow_env(), "CHROMA_MIGRATION_CONFIG": str(config),
                   "CHROMA_MIGRATION_TASK_RETRIES": "0"},
        extra_pythonpath=[REPO / "plugins"],
    )
    return env, root


@pytest.fixture
def system(moto_server: MotoServer, airflow_session) -> SnapshotSystem:
    env, root = airflow_session
    _reset(moto_server, root)
    return SnapshotSystem(moto_server, root, dict(env))
