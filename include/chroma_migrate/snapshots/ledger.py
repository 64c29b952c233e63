"""Per-batch outcomes of a migration run in DynamoDB, so a cleared or retried run skips finished batches.

Items: `PK = MIGRATION#{collection}#{run_key}`, `SK = {stage}#{index:05d}`, `status = "done"`,
`outcome` (JSON string: counts, digest, files), `updated` (ISO-8601 UTC). Only finished batches
are recorded; a batch without an item is redone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chroma_migrate.snapshots.errors import SnapshotError

MAX_OUTCOME_BYTES = 350_000  # DynamoDB items stop at 400 KB


def _check_part(kind: str, value: str) -> None:
    """Key parts are joined with '#': one inside a part would make two runs or stages collide."""
    if not isinstance(value, str) or not value or "#" in value:
        raise SnapshotError(f"Ledger {kind} {value!r} must be a non-empty string without '#'.",
                            f"Pass a plain {kind} name.")


class BatchLedger:
    """Finished-batch records of migration runs in one PK/SK string table."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def partition(collection: str, run_key: str) -> str:
        _check_part("collection", collection)
        _check_part("run key", run_key)
        return f"MIGRATION#{collection}#{run_key}"

    @staticmethod
    def sort_key(stage: str, index: int) -> str:
        _check_part("stage", stage)
        if type(index) is not int or index < 0:
            raise SnapshotError(f"Batch index {index!r} is not a non-negative int.", "Pass the batch's map index.")
        return f"{stage}#{index:05d}"

    def record_done(self, collection: str, run_key: str, stage: str, index: int, outcome: dict) -> None:
        """Mark a batch finished with its outcome (overwrites: a redone batch gives the same outcome)."""
        try:
            body = json.dumps(outcome, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise SnapshotError(f"Outcome of {stage} batch {index} is not plain JSON ({error}).",
                                "Record counts, digests and file names as str/int/float/bool/list/dict.") from None
        if len(body.encode()) > MAX_OUTCOME_BYTES:
            raise SnapshotError(
                f"Outcome of {stage} batch {index} is {len(body.encode())} bytes; DynamoDB items stop at 400 KB.",
                "Store large details (file lists, reports) in S3 and record their key in the outcome.",
            )
        item = {"PK": {"S": self.partition(collection, run_key)}, "SK": {"S": self.sort_key(stage, index)},
                "status": {"S": "done"}, "outcome": {"S": body},
                "updated": {"S": datetime.now(UTC).isoformat(timespec="seconds")}}
        self.client.put_item(TableName=self.table, Item=item)

    def outcome(self, collection: str, run_key: str, stage: str, index: int) -> dict | None:
        """The recorded outcome of one batch, or None if it has not finished."""
        key = {"PK": {"S": self.partition(collection, run_key)}, "SK": {"S": self.sort_key(stage, index)}}
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if item is None or item.get("status", {}).get("S") != "done":
            return None
        return json.loads(item["outcome"]["S"])

    def finished(self, collection: str, run_key: str, stage: str) -> dict[int, dict]:
        """Every finished batch of a stage by index (consistent, paginated query)."""
        _check_part("stage", stage)
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :stage)",
            ExpressionAttributeValues={":pk": {"S": self.partition(collection, run_key)}, ":stage": {"S": f"{stage}#"}},
        )
        done: dict[int, dict] = {}
        for page in pages:
            for item in page.get("Items", []):
                if item.get("status", {}).get("S") == "done":
                    done[int(item["SK"]["S"].split("#", 1)[1])] = json.loads(item["outcome"]["S"])
        return done
