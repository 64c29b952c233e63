"""Create the PK/SK tables the lock and the ledger use (demo and tests; production tables exist)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chroma_migrate.snapshots.errors import SnapshotError

KEY_SCHEMA = [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}]


def ensure_tables(dynamodb_client: Any, *names: str) -> None:
    """Create each missing table (PK/SK strings, on demand) and wait until it is active.

    An existing table with another key schema is refused rather than used.
    """
    for name in names:
        try:
            table = dynamodb_client.describe_table(TableName=name)["Table"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            try:
                dynamodb_client.create_table(
                    TableName=name, KeySchema=KEY_SCHEMA, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                          {"AttributeName": "SK", "AttributeType": "S"}],
                )
            except ClientError as create_error:
                if create_error.response.get("Error", {}).get("Code") != "ResourceInUseException":
                    raise  # ResourceInUse: created concurrently, wait for it below
            dynamodb_client.get_waiter("table_exists").wait(TableName=name)
            continue
        if sorted(table["KeySchema"], key=lambda k: k["KeyType"]) != KEY_SCHEMA:
            raise SnapshotError(
                f"DynamoDB table {name} exists with key schema {table['KeySchema']}, not PK (hash) / SK (range).",
                "Point the lock/ledger at a table keyed by string PK and SK.",
            )
