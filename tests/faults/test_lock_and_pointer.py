"""Scenarios 3 and 4: the lock is lost during the run, then the compactor publishes before the run is retried.

The run pauses right before its S3 pointer write (after it checked the pointer). Meanwhile
its lease runs out and the compactor takes the lock: the run must not write any pointer.
The compactor then publishes a new version and releases the lock; the same run again gets
the lock back, and must abort its swap naming both versions.
"""

from __future__ import annotations

import pytest

from chroma_migrate.snapshots.lock import DynamoLock, new_owner_id
from tests.dags.conftest import SEED_VERSION
from tests.dags.rerun import run_fixed
from tests.faults.conftest import FAULT_SPEC
from tests.faults.live_state import assert_live_intact, ledger_stages, live_bytes, lock_owner
from tests.faults.runs import run_paused

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"
WHEN = "2026-07-01T00:00:00+00:00"
CONF = {"env": "dev", "strategy": "upgrade"}
COMPACTED = "20260102_000000"


def test_a_lost_lock_stops_the_swap_and_a_moved_pointer_aborts_the_rerun(system):
    system.seed("words", spec=FAULT_SPEC)
    before = live_bytes(system)
    dynamodb = system.moto.client("dynamodb")
    compactor = DynamoLock(dynamodb, "locks-dev", "words", new_owner_id())

    def lease_runs_out_and_the_compactor_takes_the_lock() -> None:
        item = system.lock_item("words")
        dynamodb.update_item(TableName="locks-dev", Key={"PK": item["PK"], "SK": item["SK"]},
                             UpdateExpression="SET expires = :past",
                             ExpressionAttributeValues={":past": {"S": "2026-01-01T00:00:00+00:00"}})
        compactor.acquire()  # the compactor's conditional put succeeds on an expired item

    first, _ = run_paused(system.env, DAG, WHEN, CONF, "s3_pointer_put", system.root / "lost-lock",
                          lease_runs_out_and_the_compactor_takes_the_lock)
    assert first.state == "failed" and first.task_states["publish"] == "failed", first.summary()
    assert "LockLostError" in first.log and f"owner {compactor.owner} holds it" in first.log, first.summary()
    assert_live_intact(system, before)
    assert lock_owner(system) == compactor.owner, "the teardown must not release the compactor's lock"
    assert "publish#00000" not in ledger_stages(system)
    uploaded = [v for v in system.s3("words").list_versions() if v != SEED_VERSION]
    assert len(uploaded) == 1 and system.s3("words").version_exists(uploaded[0]), "complete, but not live"

    # The compactor publishes a newer snapshot under its lock and releases it.
    system.seed("words", version_id=COMPACTED, spec=FAULT_SPEC)
    assert compactor.release()
    compacted = live_bytes(system)

    second = run_fixed(system.env, DAG, WHEN, CONF, system.root / "moved.log")
    assert second.run_id == first.run_id and second.state == "failed", second.summary()
    assert second.task_states["publish"] == "failed", second.summary()
    assert f"moved from {SEED_VERSION} to {COMPACTED}" in second.log, second.summary()
    assert_live_intact(system, compacted)
    assert lock_owner(system) is None
