"""The reader gate in a real DAG run: declared readers that cannot read the migrated snapshot stop
the publish step, until the run names them in allow_breaking_readers; a publish emits an Asset event."""

from __future__ import annotations

import pytest

from tests.airflow_harness.harness import asset_events, run_dag_test
from tests.dags.conftest import GATED_READERS, SEED_VERSION

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"


@pytest.mark.slow  # 80 s, CI's budget: the reader gate's engine tests (tests/engine/test_reader_*.py) run in CI
def test_breaking_readers_stop_the_publish_until_the_run_names_them(system):
    system.seed("words", env="gated")  # written by 1.0.20; the environment's target is 1.5.9
    refused = run_dag_test(system.env, DAG, conf={"env": "gated"}, timeout_s=900)
    assert refused.state == "failed", refused.summary()
    assert refused.task_states["verify"] == "success" and refused.task_states["publish"] == "failed"
    verified = refused.xcom_return_values["verify"]
    assert sorted(verified["breaking_readers"]) == sorted(GATED_READERS)
    assert "Must be upgraded before the swap:** legacy_search, receipt_api" in verified["markdown"]
    assert "What readers will see differently" in verified["markdown"]  # the configured sample queries ran
    assert "Publishing refused: 2 declared reader(s) cannot read" in refused.log
    assert "allow_breaking_readers" in refused.log
    assert system.s3("words", "gated").read_pointer() == SEED_VERSION
    assert system.efs("words", "gated").read_pointer() == SEED_VERSION
    assert system.s3("words", "gated").list_versions() == [SEED_VERSION]
    assert system.lock_item("words", "gated") is None
    assert not [e for e in asset_events(system.env) if e["source_run_id"] == refused.run_id]

    allowed = run_dag_test(system.env, DAG, conf={"env": "gated", "allow_breaking_readers": sorted(GATED_READERS)},
                           timeout_s=900)
    assert allowed.state == "success", allowed.summary()
    live = system.s3("words", "gated").read_pointer()
    assert live != SEED_VERSION and system.efs("words", "gated").read_pointer() == live
    manifest = system.s3("words", "gated").read_manifest(system.layout("words", "gated").version_prefix(live))
    assert sorted(manifest["readers_broken"]) == sorted(GATED_READERS)
    [event] = [e for e in asset_events(system.env) if e["source_run_id"] == allowed.run_id]
    assert event["uri"] == "s3://chroma-test-gated/words/snapshot/latest-pointer.txt"
    assert event["extra"]["version_id"] == live and event["extra"]["target_version"] == "1.5.9"
    assert sorted(event["extra"]["readers_broken"]) == sorted(GATED_READERS)

