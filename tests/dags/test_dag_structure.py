"""The DAG files import cleanly, have the expected tasks and order, and bad config fails the import."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.airflow_harness.harness import _python_json, check_dag_imports

pytestmark = pytest.mark.integration

STRUCTURE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=json.loads(sys.argv[1]))
print(json.dumps({dag_id: {
    "schedule": str(getattr(dag, "schedule", None)), "params": sorted(dag.params),
    "downstream": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
    "setup": sorted(t.task_id for t in dag.tasks if t.is_setup),
    "teardown": sorted(t.task_id for t in dag.tasks if t.is_teardown),
} for dag_id, dag in bag.dags.items()}))
"""


def test_every_configured_collection_gets_a_migration_and_a_rollback_dag(airflow_session):
    env, _ = airflow_session
    report = check_dag_imports(env, safe_mode=True)  # found by Airflow's default "airflow"/"dag" sniffing
    assert report.import_errors == {}
    assert report.dag_ids == ["chroma_migration__lines", "chroma_migration__words",
                              "chroma_rollback__lines", "chroma_rollback__words"]


def test_the_migration_dag_runs_its_steps_in_order(airflow_session):
    env, _ = airflow_session
    dags = _python_json(env, STRUCTURE, env["AIRFLOW__CORE__DAGS_FOLDER"])
    dag = dags["chroma_migration__words"]
    assert dag["params"] == ["allow_breaking_readers", "batch_size", "dry_run", "env", "source_version_id", "strategy",
                             "target_version"]
    assert dag["schedule"] == "@daily"  # dev revalidation
    chain = ["resolve_source", "plan", "migration_needed", "acquire_lock", "backup", "export_batch", "load_batch",
             "verify", "live_changes_allowed", "approval_required"]
    down = dag["downstream"]
    for upstream, downstream in itertools.pairwise(chain):
        assert downstream in down[upstream], f"{upstream} -> {downstream}"
    assert set(down["approval_required"]) == {"approve", "publish"}
    assert down["approve"] == ["publish"] and down["publish"] == ["release_lock"]
    assert dag["setup"] == ["acquire_lock"] and dag["teardown"] == ["release_lock"]
    rollback = dags["chroma_rollback__words"]
    assert rollback["schedule"] == "None" and rollback["teardown"] == ["release_lock"]
    assert set(rollback["downstream"]["approval_required"]) == {"approve", "rollback"}


def test_invalid_configuration_fails_the_import_naming_the_key(airflow_session, tmp_path):
    env, root = airflow_session
    broken = json.loads((root / "chroma_migration.yaml").read_text())
    del broken["environments"]["prod"]["bucket"]
    config = tmp_path / "broken.yaml"
    config.write_text(json.dumps(broken))
    report = check_dag_imports(dict(env, CHROMA_MIGRATION_CONFIG=str(config)))
    assert report.dag_ids == []
    (error,) = report.import_errors.values()
    assert "environments.prod.bucket is missing" in error
