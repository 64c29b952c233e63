"""Finished batches are remembered per run and stage, so a rerun does only what is left."""

from __future__ import annotations

from typing import Any

import pytest

from chroma_migrate.snapshots import BatchLedger, SnapshotError, ensure_tables

pytestmark = pytest.mark.integration


def test_recorded_batches_come_back_by_index_per_stage_and_run(dynamodb: Any, table: str) -> None:
    ledger = BatchLedger(dynamodb, table)
    run = "manual__2024-05-01T12:00:00+00:00"
    for index in (0, 2, 11):
        ledger.record_done("receipts", run, "export", index,
                           {"records": 100 + index, "digest": f"d{index}", "files": [f"batch-{index:05d}.parquet"]})
    ledger.record_done("receipts", run, "exports", 5, {"records": 1})  # a stage whose name extends another
    ledger.record_done("receipts", run, "load", 0, {"records": 100})
    ledger.record_done("receipts", "other-run", "export", 1, {"records": 1})
    ledger.record_done("lines", run, "export", 3, {"records": 1})

    finished = ledger.finished("receipts", run, "export")
    assert finished == {0: {"digest": "d0", "files": ["batch-00000.parquet"], "records": 100},
                        2: {"digest": "d2", "files": ["batch-00002.parquet"], "records": 102},
                        11: {"digest": "d11", "files": ["batch-00011.parquet"], "records": 111}}
    assert set(ledger.finished("receipts", run, "load")) == {0}
    assert ledger.outcome("receipts", run, "export", 2)["records"] == 102
    assert ledger.outcome("receipts", run, "export", 1) is None
    item = dynamodb.get_item(TableName=table, Key={"PK": {"S": f"MIGRATION#receipts#{run}"},
                                                   "SK": {"S": "export#00011"}})["Item"]
    assert item["status"] == {"S": "done"} and item["updated"]["S"].endswith("+00:00")


def test_finished_pages_through_many_batches(dynamodb: Any, table: str) -> None:
    ledger = BatchLedger(dynamodb, table)
    padding = "x" * 60_000  # about 20 items per 1 MB query page
    for index in range(45):
        ledger.record_done("receipts", "run", "load", index, {"i": index, "pad": padding})
    finished = ledger.finished("receipts", "run", "load")
    assert sorted(finished) == list(range(45)) and finished[44]["i"] == 44


def test_recording_again_overwrites_and_bad_input_is_refused(dynamodb: Any, table: str) -> None:
    ledger = BatchLedger(dynamodb, table)
    ledger.record_done("receipts", "run", "load", 1, {"records": 1})
    ledger.record_done("receipts", "run", "load", 1, {"records": 2})
    assert ledger.finished("receipts", "run", "load") == {1: {"records": 2}}
    with pytest.raises(SnapshotError, match="'#'"):
        ledger.record_done("receipts", "run", "load#x", 1, {})
    with pytest.raises(SnapshotError, match="not plain JSON"):
        ledger.record_done("receipts", "run", "load", 1, {"when": object()})
    with pytest.raises(SnapshotError, match="400 KB"):
        ledger.record_done("receipts", "run", "load", 1, {"pad": "x" * 400_000})


def test_ensure_tables_is_idempotent_and_refuses_a_foreign_schema(dynamodb: Any, table: str) -> None:
    ensure_tables(dynamodb, table, table)
    described = dynamodb.describe_table(TableName=table)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    dynamodb.create_table(TableName=f"{table}-other", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    with pytest.raises(SnapshotError, match="PK"):
        ensure_tables(dynamodb, f"{table}-other")
