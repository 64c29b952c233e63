"""AWS clients for the snapshot stores, the lock and the ledger, from one Airflow connection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from chroma_migrate.configuration import Environment
from chroma_migrate.publishing import LiveSide
from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.ledger import BatchLedger
from chroma_migrate.snapshots.lock import DynamoLock
from chroma_migrate.snapshots.s3_store import STANDARD_RETRIES, S3SnapshotStore
from chroma_migrate.snapshots.transfers import POOL_CONNECTIONS

DEFAULT_RETRIES = STANDARD_RETRIES  # the CLI's S3 client (remote_source.py) uses the same policy


def retry_config(connection_config: Config | None) -> Config:
    """Standard-mode retries (exponential backoff with jitter, throttling and 5xx retried), 8 attempts,
    and a connection pool as large as the transfers' objects × parts in flight (transfers.py).

    botocore's default (legacy mode) gives S3 5 attempts and no retry quota; S3 `SlowDown` and
    DynamoDB `ThrottlingException` storms outlast that. A connection whose extra sets
    `config_kwargs.retries` keeps its own setting; every other `config_kwargs` value is kept too.
    """
    base = Config(retries=dict(DEFAULT_RETRIES), max_pool_connections=POOL_CONNECTIONS)
    return base if connection_config is None else base.merge(connection_config)


class ChromaSnapshotHook(AwsBaseHook):
    """One collection's snapshot system in one environment, from one Airflow AWS connection.

    The Amazon provider resolves the connection (credentials, region, `endpoint_url`, its
    `config_kwargs`) once; the S3 and DynamoDB clients come from one boto3 session and are made
    once per hook, with the retry policy of `retry_config`. The engine's stores, lock and
    ledger wrap them.

    :param environment: the resolved environment of the run (bucket, tables, EFS root).
    :param collection: the collection whose snapshots, lock and ledger entries are used.
    """

    hook_name = "ChromaDB snapshots"

    def __init__(self, environment: Environment, collection: str, **kwargs: Any) -> None:
        super().__init__(aws_conn_id=environment.aws_conn_id, client_type="s3", **kwargs)
        self.environment = environment
        self.collection = collection

    @cached_property
    def _session(self) -> Any:
        return self.get_session()

    @cached_property
    def _retrying(self) -> Config:
        return retry_config(self.conn_config.botocore_config)

    def _client(self, service: str) -> Any:
        endpoint = self.conn_config.get_service_endpoint_url(service_name=service)
        return self._session.client(service, endpoint_url=endpoint, config=self._retrying, verify=self.verify)

    @cached_property
    def s3_client(self) -> Any:
        return self._client("s3")

    @cached_property
    def dynamodb_client(self) -> Any:
        return self._client("dynamodb")

    def get_conn(self) -> Any:
        """The S3 client (what an AwsBaseHook of client type s3 hands out)."""
        return self.s3_client

    @cached_property
    def layout(self) -> SnapshotLayout:
        return self.environment.layout(self.collection)

    @cached_property
    def s3(self) -> S3SnapshotStore:
        return S3SnapshotStore(self.s3_client, self.layout)

    @cached_property
    def efs(self) -> EfsSnapshotStore:
        return EfsSnapshotStore(self.layout)

    def lock(self, owner: str) -> DynamoLock:
        return DynamoLock(self.dynamodb_client, self.environment.lock_table, self.collection, owner,
                          lease=timedelta(minutes=self.environment.lock_lease_minutes))

    @cached_property
    def ledger(self) -> BatchLedger:
        return BatchLedger(self.dynamodb_client, self.environment.ledger_table)

    def live_side(self, run_key: str, guard: Callable[[], None] | None = None,
                  log: Callable[[str], None] | None = None) -> LiveSide:
        """The engine's view of this collection's live stores for one run's steps."""
        return LiveSide(self.collection, run_key, self.s3, self.efs, self.ledger, self.layout,
                        **({"guard": guard} if guard else {}), **({"log": log} if log else {}))
