"""AWS clients for the snapshot stores, the lock and the ledger, from one Airflow connection."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from chroma_migrate.config import Environment
from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.ledger import BatchLedger
from chroma_migrate.snapshots.lock import DynamoLock
from chroma_migrate.snapshots.s3_store import S3SnapshotStore

DEFAULT_RETRIES = {"mode": "standard", "total_max_attempts": 8}


def retry_config(connection_config: Config | None) -> Config:
    """Standard-mode retries (exponential backoff with jitter, throttling and 5xx retried), 8 attempts.

    botocore's default (legacy mode) gives S3 5 attempts and no retry quota; S3 `SlowDown` and
    DynamoDB `ThrottlingException` storms outlast that. A connection whose extra sets
    `config_kwargs.retries` keeps its own setting; every other `config_kwargs` value is kept too.
    """
    base = Config(retries=dict(DEFAULT_RETRIES))
    return base if connection_config is None else base.merge(connection_config)


class ChromaSnapshotHook:
    """S3 and DynamoDB clients built by the Amazon provider (so `endpoint_url` and credentials
    come from the connection), wrapped in the engine's snapshot store, lock and ledger."""

    def __init__(self, environment: Environment, collection: str) -> None:
        self.environment = environment
        self.collection = collection

    @cached_property
    def s3_client(self) -> Any:
        return self._client("s3")

    @cached_property
    def dynamodb_client(self) -> Any:
        return self._client("dynamodb")

    def _client(self, service: str) -> Any:
        """A client that retries throttling and 5xx answers with backoff (see `retry_config`)."""
        plain = AwsBaseHook(aws_conn_id=self.environment.aws_conn_id, client_type=service)
        config = retry_config(plain.conn_config.botocore_config)
        return AwsBaseHook(aws_conn_id=self.environment.aws_conn_id, client_type=service, config=config).get_conn()

    @cached_property
    def layout(self) -> SnapshotLayout:
        keys = self.environment.key_layout
        return SnapshotLayout(
            bucket=self.environment.bucket, collection=self.collection, efs_root=self.environment.efs_root,
            prefix_template=keys.version_prefix, pointer_template=keys.pointer, backup_template=keys.backup_prefix,
        )

    @cached_property
    def s3(self) -> S3SnapshotStore:
        return S3SnapshotStore(self.s3_client, self.layout)

    @cached_property
    def efs(self) -> EfsSnapshotStore:
        return EfsSnapshotStore(self.layout)

    def lock(self, owner: str) -> DynamoLock:
        from datetime import timedelta

        return DynamoLock(self.dynamodb_client, self.environment.lock_table, self.collection, owner,
                          lease=timedelta(minutes=self.environment.lock_lease_minutes))

    @cached_property
    def ledger(self) -> BatchLedger:
        return BatchLedger(self.dynamodb_client, self.environment.ledger_table)

    def report_prefix(self, run_key: str) -> str:
        """Where a run's verification reports go, beside the snapshots of the collection."""
        return self.layout.pointer_key().rsplit("/", 1)[0] + f"/migrations/{run_key}/"
