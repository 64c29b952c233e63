"""Create the buckets and DynamoDB tables of every configured environment on the local AWS stand-in.

Run once by the `aws-local-init` service of docker-compose.yaml, through the same `aws_default`
connection the DAGs use (so its `endpoint_url` decides where they go). Against real AWS the
buckets and tables already exist (the compactor's): do not run this there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from chroma_migrate.snapshots.tables import ensure_tables


def _plugins_on_path() -> None:
    """The DAG package's configuration module lives in plugins/, which only Airflow puts on sys.path."""
    for folder in (Path(os.environ.get("AIRFLOW_HOME", "/opt/airflow")) / "plugins",
                   Path(__file__).resolve().parents[1] / "plugins"):
        if (folder / "chroma_migration").is_dir():
            sys.path.insert(0, str(folder))
            return


def main() -> None:
    _plugins_on_path()
    from chroma_migrate.configuration import load_config

    config = load_config()
    for environment in config.environments.values():
        s3 = AwsBaseHook(aws_conn_id=environment.aws_conn_id, client_type="s3").get_conn()
        dynamodb = AwsBaseHook(aws_conn_id=environment.aws_conn_id, client_type="dynamodb").get_conn()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=environment.bucket)
        ensure_tables(dynamodb, environment.lock_table, environment.ledger_table)
        environment.efs_root.mkdir(parents=True, exist_ok=True)
        environment.staging_root.mkdir(parents=True, exist_ok=True)
        print(f"{environment.name}: bucket {environment.bucket}, tables {environment.lock_table} and "
              f"{environment.ledger_table}, EFS {environment.efs_root}, staging {environment.staging_root}")


if __name__ == "__main__":
    main()
