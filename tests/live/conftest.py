"""One production-shaped Airflow for the live tests of this folder, and the snapshot system it works on.

The module-scoped `live` fixture seeds dev and prod snapshots (written by chromadb 1.0.20, and
one by 1.5.9) on a moto server, creates a PostgreSQL database and claims a Redis database, then
starts api-server, scheduler, dag-processor, triggerer and two Celery workers. Its teardown
checks that no process it started is alive and that the database is gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.lock import DynamoLock
from chroma_migrate.snapshots.s3_store import S3SnapshotStore
from chroma_migrate.snapshots.tables import ensure_tables
from chroma_migrate_testkit.fixtures import cached_database
from chroma_migrate_testkit.standins import MotoServer, copy_database, seed_snapshot
from tests.airflow_harness.harness import airflow_home
from tests.conftest import FIXTURE_CACHE, REPO
from tests.dags.conftest import SEED_VERSION, SMALL_SPEC
from tests.live.cluster import Cluster, airflow_cluster
from tests.live.rest import AirflowApi
from tests.live.services import (
    ServiceUnavailable,
    check_services,
    postgres_database,
    postgres_database_exists,
    redis_database,
)

WORKERS = ("live-worker-a", "live-worker-b")
DAG_IDS = ("chroma_migration__words", "chroma_migration__lines", "chroma_rollback__words", "chroma_rollback__lines")
# (env, collection) -> the chromadb version that wrote its live snapshot. Dev is already at the target,
# so its nightly revalidation has nothing to do (until a test publishes an older one); prod needs a migration.
SEEDS = {("prod", "words"): "1.0.20", ("prod", "lines"): "1.0.20", ("dev", "words"): "1.5.9",
         ("dev", "lines"): "1.5.9"}


def live_config(root: Path) -> str:
    """The shipped shape: dev revalidates daily without approval, prod is triggered and approved."""
    environments = {
        name: {"bucket": f"chroma-live-{name}", "efs_root": str(root / f"efs-{name}"),
               "staging_root": str(root / f"staging-{name}"), "lock_table": f"live-locks-{name}",
               "ledger_table": f"live-ledger-{name}", "require_approval": name == "prod",
               "schedule": "@daily" if name == "dev" else None}
        for name in ("dev", "prod")
    }
    return json.dumps({
        "defaults": {"aws_conn_id": "aws_default", "target_version": "1.5.9", "batch_size": 5000,
                     "lock_lease_minutes": 10, "lock_wait_minutes": 0.25},
        "collections": ["words", "lines"], "environments": environments,
    }, indent=2)


@dataclass
class LiveSystem:
    cluster: Cluster
    api: AirflowApi
    moto: MotoServer
    root: Path
    seeds: dict[tuple[str, str], Path]

    def layout(self, collection: str, env: str) -> SnapshotLayout:
        return SnapshotLayout(f"chroma-live-{env}", collection, self.root / f"efs-{env}")

    def s3(self, collection: str, env: str) -> S3SnapshotStore:
        return S3SnapshotStore(self.moto.client("s3"), self.layout(collection, env))

    def efs(self, collection: str, env: str) -> EfsSnapshotStore:
        return EfsSnapshotStore(self.layout(collection, env))

    def lock(self, collection: str, env: str, owner: str) -> DynamoLock:
        return DynamoLock(self.moto.client("dynamodb"), f"live-locks-{env}", collection, owner)

    def lock_item(self, collection: str, env: str) -> dict | None:
        return self.lock(collection, env, "reader").read()

    def publish_as_compactor(self, collection: str, env: str, version: str) -> tuple[str, Path]:
        """A new live snapshot written by chromadb `version`, published the way the compactor does it."""
        version_id = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        cached = cached_database(FIXTURE_CACHE, version, SMALL_SPEC)
        local = copy_database(cached, self.root / "seeds" / f"{env}-{collection}-{version_id}")
        seed_snapshot(self.moto.client("s3"), self.layout(collection, env), local, version_id)
        return version_id, local


def _require_services() -> None:
    try:
        check_services()
    except ServiceUnavailable as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(str(missing), pytrace=False)
        pytest.skip(str(missing))


def _seed(moto: MotoServer, root: Path) -> dict[tuple[str, str], Path]:
    dynamodb, seeds = moto.client("dynamodb"), {}
    for env in ("dev", "prod"):
        ensure_tables(dynamodb, f"live-locks-{env}", f"live-ledger-{env}")
    for (env, collection), version in SEEDS.items():
        cached = cached_database(FIXTURE_CACHE, version, SMALL_SPEC)
        local = copy_database(cached, root / "seeds" / f"{env}-{collection}")
        layout = SnapshotLayout(f"chroma-live-{env}", collection, root / f"efs-{env}")
        seed_snapshot(moto.client("s3"), layout, local, SEED_VERSION)
        seeds[(env, collection)] = local
    return seeds


@pytest.fixture(scope="module")
def live(moto_server: MotoServer, tmp_path_factory) -> Iterator[LiveSystem]:
    _require_services()
    root = tmp_path_factory.mktemp("live")
    config = root / "chroma_migration.yaml"
    config.write_text(live_config(root))  # JSON is YAML
    seeds = _seed(moto_server, root)
    with postgres_database() as database_url, redis_database() as broker:
        env = airflow_home(
            root / "airflow_home", dags_folder=REPO / "dags", plugins_folder=REPO / "plugins",
            extra_env={**moto_server.airflow_env(), "CHROMA_MIGRATION_CONFIG": str(config)},
            extra_pythonpath=[REPO / "plugins", REPO], migrate=False,
        )
        with airflow_cluster(env, database_url, broker.url, workers=WORKERS) as cluster:
            api = AirflowApi(cluster.base_url, cluster.assert_running, cluster.log_tails)
            api.wait_for_dags(DAG_IDS)
            yield LiveSystem(cluster, api, moto_server, root, seeds)
        assert cluster.survivors == [], f"processes still alive after the shutdown: {cluster.survivors}"
    assert not postgres_database_exists(database_url), f"{database_url} was not dropped"
