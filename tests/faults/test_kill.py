"""Scenarios 1 and 6: one run id is interrupted at every step, and each time run again until it converges.

Scenario 1: the process running a task is SIGKILLed five times, each time one step further:
mid backup copy, after an export batch wrote its files, after a load batch wrote into the new
database, mid upload of the new snapshot, and between the S3 and the EFS pointer writes.
Scenario 6: between two of those attempts, a staged export file gets one byte flipped while
the run waits to load it; the load must refuse it naming the file, and the next attempt
exports that batch again. After every interruption the live state is checked: both pointers
name the old version or (after the S3 write) the complete, verified new one, never a partial
prefix; and the same run, run once more, converges.
"""

from __future__ import annotations

import pytest

from chroma_migrate.pipeline import run_key_for
from tests.dags.conftest import SEED_VERSION
from tests.dags.rerun import run_fixed
from tests.faults.conftest import FAULT_SPEC
from tests.faults.live_state import (
    assert_converged,
    assert_live_intact,
    assert_no_partial_version_live,
    ledger_stages,
    live_bytes,
    lock_owner,
)
from tests.faults.runs import run_killed, run_paused

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"
WHEN = "2026-05-01T00:00:00+00:00"
CONF = {"env": "dev", "strategy": "rebuild", "batch_size": 200}  # words in 2 batches, lines in 1


@pytest.mark.slow  # over a minute: `make test-slow` (CI budget, README Tests)
def test_sigkill_at_each_step_then_the_same_run_converges(system):
    system.seed("words", spec=FAULT_SPEC)
    before = live_bytes(system)
    log = system.root / "kill"

    def killed(fault: str):
        result = run_killed(system.env, DAG, WHEN, CONF, fault, log / f"{fault}.log")
        owner = result.xcom_return_values["resolve_source"]["owner"]
        assert lock_owner(system) == owner, "the run's lock stays until it is rerun, which re-enters it"
        return result

    first = killed("backup_copy:2")
    assert_live_intact(system, before)
    backups = system.s3("words").list_objects("words/snapshot/backups/")
    assert len(backups) > 0 and not any(k.endswith("manifest.json") for k in backups), "a partial backup"
    assert "backup#00000" not in ledger_stages(system)

    killed("export_batch_written:1")
    assert_live_intact(system, before)
    stages = ledger_stages(system)
    assert "backup#00000" in stages and "export#00001" not in stages  # mapped tasks run in any order

    damaged = []

    def flip_a_byte() -> None:
        (batch,) = (system.root / "staging-dev" / "words").glob("*/exports/00000")
        (parquet,) = batch.rglob("*.parquet")
        data = bytearray(parquet.read_bytes())
        data[len(data) // 2] ^= 0x01  # pyarrow reads most such flips without an error, as other values
        parquet.write_bytes(bytes(data))
        damaged.append(parquet)

    refused, _ = run_paused(system.env, DAG, WHEN, CONF, "load_batch:0", log / "damage", flip_a_byte)
    assert refused.state == "failed" and refused.task_states["load_batch[0]"] == "failed", refused.summary()
    assert f"{damaged[0]} changed since it was exported" in refused.log, refused.summary()
    assert refused.task_states["verify"] in ("upstream_failed", "skipped"), refused.summary()
    assert_live_intact(system, before)
    stages = ledger_stages(system)
    assert "export#00001" in stages and "load#00000" not in stages
    exported = stages["export#00000"]

    again = killed("load_batch_written:0")
    assert "is exported again" in again.log, "the damaged batch is exported anew"
    assert_live_intact(system, before)
    stages = ledger_stages(system)
    assert stages["export#00000"] >= exported and "load#00000" not in stages

    killed("upload_object:3")
    assert_live_intact(system, before)
    partial = assert_no_partial_version_live(system)
    assert len(partial) == 1, "the interrupted upload is a prefix without a manifest, and nobody points at it"
    assert "publish-version#00000" in ledger_stages(system) and "publish#00000" not in ledger_stages(system)

    killed("between_pointers")
    s3, efs = system.s3("words"), system.efs("words")
    new = s3.read_pointer()
    assert new == partial[0], "the S3 pointer names the version id this run chose once"
    assert efs.read_pointer() == SEED_VERSION, "the EFS switch had not happened yet"
    assert assert_no_partial_version_live(system) == [], "the S3 pointer names a complete version"

    last = run_fixed(system.env, DAG, WHEN, CONF, log / "converge.log")
    assert last.run_id == first.run_id and last.state == "success", last.summary()
    assert assert_converged(system, FAULT_SPEC)[0] == new
    assert lock_owner(system) is None
    stages = ledger_stages(system)
    run_key = run_key_for(first.run_id)
    assert stages["publish#00000"] and run_key in {i["PK"]["S"].split("#", 2)[2] for i in system.ledger_items()}
