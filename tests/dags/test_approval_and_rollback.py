"""Production runs wait for a human: approved through Airflow's HITL REST API they publish,
rejected they change nothing. Rollback points both pointers back, or rebuilds the current
data into the old version's format."""

from __future__ import annotations

import pytest

from tests.airflow_harness.harness import api_server, run_dag_test, run_dag_test_with_hitl
from tests.conftest import dump_records
from tests.dags.conftest import SEED_VERSION
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration


@pytest.fixture
def server(system):
    with api_server(system.env) as running:
        yield running


def test_prod_run_waits_for_approval_and_publishes_when_approved(system, server):
    seed_db = system.seed("words", env="prod")
    result, answers = run_dag_test_with_hitl(system.env, server.base_url, "chroma_migration__words", ["Approve"],
                                             conf={"env": "prod"}, timeout_s=900)
    assert result.state == "success", result.summary()
    assert answers[0].task_id == "approve"
    assert "Verification PASSED" in answers[0].body and "| words | 292 | 292 |" in answers[0].body
    assert "s3://chroma-test-prod/words/snapshot/migrations/" in answers[0].body
    live = system.s3("words", "prod").read_pointer()
    assert live != SEED_VERSION and system.efs("words", "prod").read_pointer() == live
    expected = dump_records("1.0.20", seed_db)
    assert_same_records(expected, dump_records("1.5.9", system.layout("words", "prod").efs_version_dir(live)),
                        spaces_of(expected))
    assert system.lock_item("words", "prod") is None


@pytest.mark.slow  # the live test rejects a prod run the same way in every run
def test_prod_run_rejected_changes_nothing_and_releases_the_lock(system, server):
    system.seed("lines", env="prod")
    result, answers = run_dag_test_with_hitl(system.env, server.base_url, "chroma_migration__lines", ["Reject"],
                                             conf={"env": "prod"}, timeout_s=900)
    assert answers[0].chosen_options == ["Reject"]
    assert result.task_states["approve"] == "success", result.summary()
    assert result.task_states["publish"] == "skipped"
    assert result.task_states["release_lock"] == "success"
    assert system.s3("lines", "prod").read_pointer() == SEED_VERSION
    assert system.efs("lines", "prod").read_pointer() == SEED_VERSION
    assert system.s3("lines", "prod").list_versions() == [SEED_VERSION]
    assert system.lock_item("lines", "prod") is None


@pytest.mark.slow  # 40 s; the live test and test_rollback_from_backup.py roll back in every run
def test_rollback_points_s3_and_efs_back(system):
    system.seed("words")
    migrated = run_dag_test(system.env, "chroma_migration__words", conf={"env": "dev"}, timeout_s=600)
    assert migrated.state == "success", migrated.summary()
    new_version = system.s3("words").read_pointer()
    assert new_version != SEED_VERSION
    result = run_dag_test(system.env, "chroma_rollback__words", conf={"env": "dev"}, timeout_s=600)
    assert result.state == "success", result.summary()
    assert system.s3("words").read_pointer() == SEED_VERSION
    assert system.efs("words").read_pointer() == SEED_VERSION
    assert system.s3("words").version_exists(new_version), "the rolled-back version stays for a later retry"
    assert system.lock_item("words") is None


@pytest.mark.slow  # over a minute: `make test-slow` (CI budget, README Tests)
def test_rollback_can_rebuild_the_current_data_into_the_old_format(system):
    system.seed("words")
    migrated = run_dag_test(system.env, "chroma_migration__words", conf={"env": "dev"}, timeout_s=600)
    assert migrated.state == "success", migrated.summary()
    current = system.s3("words").read_pointer()
    result = run_dag_test(system.env, "chroma_rollback__words", conf={"env": "dev", "rebuild_current": True},
                          timeout_s=900)
    assert result.state == "success", result.summary()
    live = system.s3("words").read_pointer()
    assert live not in (SEED_VERSION, current), "a rebuild publishes a new version in the old format"
    assert system.efs("words").read_pointer() == live
    rebuilt = system.layout("words").efs_version_dir(live)
    expected = dump_records("1.5.9", system.layout("words").efs_version_dir(current))
    assert_same_records(expected, dump_records("1.0.20", rebuilt), spaces_of(expected))
    manifest = system.s3("words").read_manifest(system.layout("words").version_prefix(live))
    assert manifest["chromadb_version"] == "1.0.20" and manifest["rolled_back_from"] == current
    assert "in chromadb 1.0.20's format" in result.log, "the rebuild runs the migration's batch steps"
