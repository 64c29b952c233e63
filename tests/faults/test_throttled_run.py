"""Scenario 2 through the DAG: S3 and DynamoDB throttle, fail and lose answers while a migration runs.

The Airflow AWS connection points at the fault proxy. The first run meets throttling and
server errors on every operation and lost answers on every kind of conditional write, and
gets through all of them; then the S3 pointer PUT keeps failing, so it fails at that step
with a message naming the error and the live state, and nothing live changed. The same run
again, once S3 accepts the pointer (still throttled), converges.
"""

from __future__ import annotations

import json

import pytest

from chroma_migrate_testkit.standins import REGION
from tests.dags.conftest import SEED_VERSION
from tests.dags.rerun import run_fixed
from tests.faults.conftest import FAULT_SPEC
from tests.faults.fault_proxy import FaultProxy, FaultRules
from tests.faults.live_state import assert_converged, assert_live_intact, live_bytes, lock_owner

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"
WHEN = "2026-06-01T00:00:00+00:00"
CONF = {"env": "dev", "strategy": "upgrade"}


def through(env: dict[str, str], proxy: FaultProxy, attempts: int) -> dict[str, str]:
    """The run's environment with the Airflow AWS connection pointed at the proxy."""
    extra = {"endpoint_url": proxy.endpoint, "region_name": REGION,
             "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": attempts}}}
    return {**env, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": extra})}


@pytest.mark.slow  # over a minute: `make test-slow` (CI budget, README Tests)
def test_throttling_is_retried_and_a_failing_pointer_write_changes_nothing_live(system):
    system.seed("words", spec=FAULT_SPEC)
    before = live_bytes(system)
    pointer = system.layout("words").pointer_key()
    down = FaultRules(always_fail=lambda r: r.method == "PUT" and r.key == pointer)
    with FaultProxy(system.moto.endpoint, down) as proxy:
        first = run_fixed(through(system.env, proxy, 4), DAG, WHEN, CONF, system.root / "throttled-1.log")
    assert first.state == "failed" and first.task_states["publish"] == "failed", first.summary()
    assert all(first.task_states[t] == "success" for t in ("resolve_source", "backup", "verify")), first.summary()
    assert "The publish step failed talking to AWS after the client's retries" in first.log
    assert "SlowDown" in first.log and f"Live now: S3 pointer {SEED_VERSION}, EFS pointer {SEED_VERSION}" in first.log
    assert_live_intact(system, before)
    assert lock_owner(system) is None, "the teardown released the lock through the throttled proxy"
    injected = {entry.split()[1] for entry in down.log}
    assert {"s3:GetObject", "s3:PutObject", "s3:CopyObject", "dynamodb:GetItem", "dynamodb:PutItem"} <= injected
    assert {"dynamodb:PutItem/condition", "s3:PutObject/if-none-match"} <= injected, down.log
    assert sum("(always)" in entry for entry in down.log) == 4, "four attempts at the pointer, then the error"

    again = FaultRules()  # still throttled, and again a lost answer for each kind of conditional write
    with FaultProxy(system.moto.endpoint, again) as proxy:
        second = run_fixed(through(system.env, proxy, 8), DAG, WHEN, CONF, system.root / "throttled-2.log")
    assert second.run_id == first.run_id and second.state == "success", second.summary()
    assert "s3:PutObject/if-match" in {entry.split()[1] for entry in again.log}, "the pointer PUT's answer was lost"
    assert assert_converged(system, FAULT_SPEC, copied=True)[0] > SEED_VERSION  # upgrade: bit for bit
    assert lock_owner(system) is None
