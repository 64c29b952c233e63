"""Scenario 8: bad Params and configuration are refused before any work, naming the field.

Seven runs in one Airflow process: a collection with no snapshot in the environment asked for,
a source version that does not exist, an unsupported target version, a batch size of 0, a
downgrade to a version that cannot hold the data (list metadata into 1.3.7), a forced
`upgrade` that is really a downgrade, and an allowed-to-break reader the environment does not
declare. None may lock, back up, upload or swap anything.
"""

from __future__ import annotations

import pytest

from chroma_migrate_testkit.fixtures import receipt_spec
from tests.dags.conftest import SEED_VERSION
from tests.faults.conftest import FAULT_SPEC
from tests.faults.live_state import assert_live_intact, ledger_stages, live_bytes
from tests.faults.runs import run_many

pytestmark = pytest.mark.integration

LISTS_SPEC = receipt_spec(with_lists=True, big_dim=None)


def conf(**changes: object) -> dict[str, object]:
    """Every Param spelled out: runs of one dag.test() process would otherwise inherit each other's conf."""
    return {"env": "dev", "source_version_id": None, "target_version": None, "strategy": "auto", "batch_size": None,
            "dry_run": False, "allow_breaking_readers": [], **changes}


def test_bad_params_are_refused_before_any_work_naming_the_field(system):
    system.seed("words", version="1.5.9", spec=LISTS_SPEC)
    system.seed("lines", spec=FAULT_SPEC)
    before = {name: live_bytes(system, name) for name in ("words", "lines")}
    words, lines = "chroma_migration__words", "chroma_migration__lines"
    runs = run_many(system.env, [
        (words, "2026-10-01T00:00:00+00:00", conf(env="prod")),
        (words, "2026-10-02T00:00:00+00:00", conf(source_version_id="20250101_000000")),
        (words, "2026-10-03T00:00:00+00:00", conf(target_version="0.3.0")),
        (words, "2026-10-04T00:00:00+00:00", conf(batch_size=0)),
        (words, "2026-10-05T00:00:00+00:00", conf(target_version="1.3.7")),
        (lines, "2026-10-06T00:00:00+00:00", conf(target_version="0.6.3", strategy="upgrade")),
        (words, "2026-10-07T00:00:00+00:00", conf(env="gated", allow_breaking_readers=["legacy_serch"])),
    ], system.root / "bad-params.log")
    no_collection, no_version, bad_target, zero_batch, unrepresentable, forced, undeclared = runs

    assert no_collection.task_states["resolve_source"] == "failed", no_collection.log[-3000:]
    assert "No snapshot pointer at s3://chroma-test-prod/words/snapshot/latest-pointer.txt" in no_collection.log
    assert no_version.task_states["resolve_source"] == "failed"
    assert "No snapshot '20250101_000000' under s3://chroma-test-dev/words/snapshot/timestamped/" in no_version.log
    assert "Pass an existing source_version_id" in no_version.log
    assert bad_target.run_id is None and "target_version" in bad_target.refused and "0.3.0" in bad_target.refused
    assert zero_batch.run_id is None and "batch_size" in zero_batch.refused, zero_batch.refused
    assert unrepresentable.task_states["plan"] == "failed", unrepresentable.log[-3000:]
    assert "metadata field 'labels' holds a list" in unrepresentable.log
    assert "chromadb 1.3.7 cannot store list metadata" in unrepresentable.log
    assert forced.task_states["plan"] == "failed", forced.log[-3000:]
    assert "The upgrade strategy cannot work here" in forced.log
    assert "Use the transplant, rebuild or auto strategy" in forced.log
    # Only a declared reader can be allowed to break: a typo must not pass for permission.
    assert undeclared.task_states["resolve_source"] == "failed", undeclared.log[-3000:]
    assert "names ['legacy_serch'], which this environment does not declare" in undeclared.log

    for run in runs:
        if run.run_id:
            assert run.state == "failed", run.log[-3000:]
            assert run.task_states["acquire_lock"] in (None, "upstream_failed"), run.task_states
    for name in ("words", "lines"):
        assert_live_intact(system, before[name], name)
        assert system.s3(name).list_versions() == [SEED_VERSION]
        assert system.lock_item(name) is None and system.lock_item(name, "prod") is None
    assert system.s3("words").list_objects("words/snapshot/backups/") == {}
    assert {stage.split("#")[0] for stage in ledger_stages(system)} <= {"source"}, "no step past the resolve ran"
