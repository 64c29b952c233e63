"""The lock sensor against a real DynamoDB (moto server), in a child process with the Airflow
environment the DAG tests use. Every sensor call gets a fresh sensor, as reschedule mode runs
each poke in a new process: it takes a free lock, waits on a held one, and when its wait runs
out it reads the lock without taking it."""

from __future__ import annotations

import pytest

from chroma_migrate.snapshots.lock import new_owner_id
from tests.airflow_harness.harness import _python_json

pytestmark = pytest.mark.integration

# Steps: ["hold", owner] and ["release", owner] act as the compactor; ["poke"] and ["gave_up"]
# call a new sensor; ["item"] reads the lock item's owner (None when free).
SENSOR_STEPS = r"""
import json, sys
from chroma_migrate.snapshots.lock import DynamoLock
from chroma_migrate.configuration import load_config
from chroma_migration.lock_operators import AcquireLockSensor
from chroma_migration.run_state import MigrationRun
arg = json.loads(sys.argv[1])
environment = load_config(arg["config"]).environment("dev")
run = MigrationRun.start(collection="words", environment=environment, run_id="manual__lock-sensor",
                         source_version_id="v", target_version="1.5.9", strategy="auto", batch_size=100,
                         dry_run=False)
sensor = lambda: AcquireLockSensor(task_id="acquire_lock", collection="words", run=run.to_xcom())
client = sensor()._lock().client
compactor = lambda owner: DynamoLock(client, environment.lock_table, "words", owner)
results = []
for step in arg["steps"]:
    if step[0] == "hold":
        results.append(compactor(step[1]).acquire())
    elif step[0] == "release":
        results.append(compactor(step[1]).release())
    elif step[0] == "poke":
        results.append(sensor().poke({}))
    elif step[0] == "gave_up":
        results.append(str(sensor().gave_up(0.1)))
    else:
        results.append((compactor("reader").read() or {}).get("owner"))
print(json.dumps({"results": results, "owner": run.owner}))
"""


def run_steps(system, *steps: list[str]) -> dict:
    return _python_json(system.env, SENSOR_STEPS, {"steps": [list(s) for s in steps],
                                                   "config": system.env["CHROMA_MIGRATION_CONFIG"]})


def test_the_sensor_waits_names_the_holder_and_never_takes_a_lock_freed_as_its_wait_ran_out(system):
    """The defect: the timeout path asked `acquire()` who held the lock, so a lock released
    between the last poke and the timeout was taken by the failing task and never given back
    (a failed setup task runs no teardown, so the compactor was shut out until the lease ended)."""
    holder = new_owner_id()
    done = run_steps(system, ["hold", holder], ["poke"], ["gave_up"], ["item"], ["release", holder], ["gave_up"],
                     ["item"], ["poke"], ["item"])
    _held, waited, named, still_theirs, _released, freed, left_free, taken, ours = done["results"]
    assert waited is False
    assert holder in named and "Gave up waiting" in named and still_theirs == holder
    assert "released just as the wait ran out" in freed and left_free is None, "the failure path took the lock"
    assert taken is True and ours == done["owner"]
