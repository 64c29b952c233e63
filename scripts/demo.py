"""`make demo`: the migration DAG end to end on local stand-ins, with the real Airflow.

Starts a moto server (S3 + DynamoDB) on 127.0.0.1, seeds dev snapshots of `words` and
`lines` written by chromadb 1.0.20 in the production layout (S3 prefix + pointer, EFS
folder + pointer), runs `airflow dags test chroma_migration__words` for dev with a
SQLite metadata database under .demo/, and prints what happened.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from chroma_migrate.inspection import describe_database
from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.s3_store import S3SnapshotStore
from chroma_migrate.snapshots.tables import ensure_tables
from chroma_migrate_testkit.fixtures import cached_database, receipt_spec
from chroma_migrate_testkit.standins import MotoServer, copy_database, seed_snapshot

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
AIRFLOW = Path(sys.executable).parent / "airflow"
SOURCE_VERSION = "1.0.20"
SEED_VERSION_ID = "20260101_000000"


def demo_env(moto: MotoServer) -> dict[str, str]:
    home = DEMO / "airflow_home"
    return {
        **os.environ, **moto.airflow_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": str(REPO / "plugins"),
        "CHROMA_DEV_BUCKET": "chroma-demo-dev", "CHROMA_DEV_EFS_ROOT": str(DEMO / "efs-dev"),
        "CHROMA_DEV_STAGING_ROOT": str(DEMO / "staging-dev"), "CHROMA_DEV_LOCK_TABLE": "chroma-locks-dev",
        "CHROMA_DEV_LEDGER_TABLE": "chroma-ledger-dev", "CHROMA_MIGRATION_TASK_RETRIES": "0",
    }


def seed(moto: MotoServer) -> dict[str, SnapshotLayout]:
    ensure_tables(moto.client("dynamodb"), "chroma-locks-dev", "chroma-ledger-dev")
    layouts = {}
    for collection in ("words", "lines"):
        cached = cached_database(REPO / ".cache" / "fixtures", SOURCE_VERSION,
                                 receipt_spec(records=1500, dim=64, big_dim=None))
        database = copy_database(cached, DEMO / "seed" / collection)
        layout = SnapshotLayout("chroma-demo-dev", collection, DEMO / "efs-dev")
        seed_snapshot(moto.client("s3"), layout, database, SEED_VERSION_ID)
        layouts[collection] = layout
    return layouts


def task_durations(env: dict[str, str], dag_id: str) -> list[tuple[str, int, str, float]]:
    database = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT task_id, map_index, state, (julianday(end_date) - julianday(start_date)) * 86400 "
            "FROM task_instance WHERE dag_id = ? ORDER BY start_date", (dag_id,)).fetchall()


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    with MotoServer(DEMO / "moto.log") as moto:
        env = demo_env(moto)
        print(f"moto server on {moto.endpoint}; seeding dev snapshots written by chromadb {SOURCE_VERSION}")
        layouts = seed(moto)
        subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
        started = time.monotonic()
        dag_id = "chroma_migration__words"
        print(f"$ airflow dags test {dag_id} --conf '{{\"env\": \"dev\"}}'")
        result = subprocess.run([str(AIRFLOW), "dags", "test", dag_id, "--conf", json.dumps({"env": "dev"})],
                                env=env, capture_output=True, text=True)
        (DEMO / "dags-test.log").write_text(result.stdout + result.stderr)
        print(f"finished in {time.monotonic() - started:.0f}s with exit code {result.returncode} "
              f"(log: {DEMO / 'dags-test.log'})\n")
        print(f"{'task':<24}{'batch':>6}  {'state':<10}{'seconds':>8}")
        for task_id, map_index, state, seconds in task_durations(env, dag_id):
            print(f"{task_id:<24}{map_index if map_index >= 0 else '':>6}  {state or '-':<10}{seconds or 0:>8.1f}")
        layout = layouts["words"]
        store, efs = S3SnapshotStore(moto.client("s3"), layout), EfsSnapshotStore(layout)
        live = store.read_pointer()
        print(f"\nS3 pointer  {store.url(layout.pointer_key())}: {SEED_VERSION_ID} -> {live}")
        print(f"EFS pointer {layout.efs_pointer_path()}: {efs.read_pointer()}")
        if live != SEED_VERSION_ID:
            manifest = store.read_manifest(layout.version_prefix(live)) or {}
            info = describe_database(layout.efs_version_dir(live))
            records = ", ".join(f"{c.name}={c.records}" for c in info.collections)
            print(f"new version written by chromadb {'/'.join(info.written_by)} with strategy "
                  f"{manifest.get('strategy')}; records: {records}")
            report = next((DEMO / "staging-dev" / "words").glob("*/verification.md"), None)
            if report:
                print("\n" + report.read_text())
        if result.returncode != 0:
            print(result.stdout[-4000:] + result.stderr[-4000:])
            raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
