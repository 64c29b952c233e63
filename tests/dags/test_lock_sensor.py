"""The lock sensor against a real DynamoDB (moto server), each call in a fresh child process
with the Airflow environment the DAG tests use, as reschedule mode runs every poke: it takes a
free lock, waits on a held one, and when its wait runs out it reads the lock without taking it."""

from __future__ import annotations

import pytest

from chroma_migrate.snapshots.lock import DynamoLock, new_owner_id
from tests.airflow_harness.harness import _python_json

pytestmark = pytest.mark.integration

SENSOR_CALL = r"""
import json, sys
from chroma_migration.lock_operators import AcquireLockSensor
from chroma_migrate.config import load_config
from chroma_migration.run_state import MigrationRun
arg = json.loads(sys.argv[1])
environment = load_config(arg["config"]).environment("dev")
run = MigrationRun.start(collection="words", environment=environment, run_id="manual__lock-sensor",
                         source_version_id="v", target_version="1.5.9", strategy="auto", batch_size=100,
                         dry_run=False)
sensor = AcquireLockSensor(task_id="acquire_lock", collection="words", run=run.to_xcom())
result = sensor.poke({}) if arg["call"] == "poke" else str(sensor.gave_up(0.1))
print(json.dumps({"result": result, "owner": run.owner}))
"""


def sensor_call(system, call: str) -> dict:
    return _python_json(system.env, SENSOR_CALL, {"call": call, "config": system.env["CHROMA_MIGRATION_CONFIG"]})


def compactor(system) -> DynamoLock:
    return DynamoLock(system.moto.client("dynamodb"), "locks-dev", "words", new_owner_id())


def test_a_lock_freed_as_the_wait_runs_out_is_left_free(system):
    """The defect: the timeout path asked `acquire()` who held the lock, so a lock released
    between the last poke and the timeout was taken by the failing task and never given back
    (a failed setup task runs no teardown)."""
    holder = compactor(system)
    holder.acquire()
    assert sensor_call(system, "poke")["result"] is False
    assert holder.release()
    failure = sensor_call(system, "gave_up")["result"]
    assert "released just as the wait ran out" in failure
    assert system.lock_item("words") is None, "the sensor's failure path must not take the lock"


def test_the_timeout_names_the_current_holder_and_leaves_its_lock(system):
    holder = compactor(system)
    holder.acquire()
    failure = sensor_call(system, "gave_up")["result"]
    assert holder.owner in failure and "Gave up waiting" in failure
    assert system.lock_item("words")["owner"]["S"] == holder.owner


def test_a_free_lock_is_taken_by_the_run(system):
    taken = sensor_call(system, "poke")
    assert taken["result"] is True
    assert system.lock_item("words")["owner"]["S"] == taken["owner"]
